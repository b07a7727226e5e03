"""Executing a compiled graph: the scheduler, its backends (in-process, Ray), one step's run and
its context, and the connection to Ray."""
