"""``nautilus-tasks bench``: the built-in benchmark.

``app`` holds the engines that the bench's worker processes run; ``procs`` starts
those processes and reads their CPU time and RSS from the kernel; ``scenarios`` and
``soak`` measure; ``runner`` runs the selected scenarios with a progress bar and
``command`` is the click command. Nothing here runs at import time.
"""
