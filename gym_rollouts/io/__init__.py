"""File I/O at the two ends of the pipeline: the task source and the output sink."""
