"""Volume readers and writers, chosen by file extension."""

BUILTIN_FORMATS: list[type] = []
