"""The one exception type users see as a message instead of a traceback."""


class PipelineError(Exception):
    """Bad input or environment: the message says what is wrong and what to do."""
