"""The one exception family of digitlab: the CLI prints these as one line and exits 2."""


class DigitlabError(Exception):
    """A problem the user can fix: bad input, a wrong name, an impossible setting."""


class DataError(DigitlabError):
    """A data file is missing, corrupt, truncated or does not match its partner."""


class NoDigitFound(DataError):
    """An image that holds no ink to read: blank or near-blank paper."""


class ConfigError(DigitlabError):
    """An unknown name or an impossible hyper-parameter."""


class CheckpointError(DigitlabError):
    """A checkpoint or run folder is missing, broken or of another architecture."""


class TrainingDiverged(DigitlabError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""
