"""Lightning callbacks shipped with mathverify; they rely only on the step-output contract."""

from callbacks.checkpoint import RoundCheckpoint
from callbacks.metrics import VerificationMetrics
from callbacks.rounds import StepRounds
from callbacks.submission import SubmissionWriter

__all__ = ["RoundCheckpoint", "StepRounds", "SubmissionWriter", "VerificationMetrics"]
