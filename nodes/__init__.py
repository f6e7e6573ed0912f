"""Stepwise's V3 nodes, one small module per technique; glue only, the math lives in ``kernels``."""

from .anagram import VisualAnagram
from .artifact import ArtifactEstimator, LoadArtifactEstimator
from .early_reject import ArtifactEarlyReject
from .hybrid import HybridNoise
from .keypoint import KeypointCondition
from .keypoint_load import LoadPoseKeypoint
from .loader import LoadStepwiseCheckpoint, LoadStepwiseWorldCheckpoint
from .p2p import PromptToPromptAttn
from .p2p_maps import PromptToPromptMaps
from .refine import LateStepRefine
from .schedule import SplitSigmasAtTimestep

NODES = [
    SplitSigmasAtTimestep,
    VisualAnagram,
    HybridNoise,
    LateStepRefine,
    LoadStepwiseCheckpoint,
    LoadStepwiseWorldCheckpoint,
    KeypointCondition,
    LoadPoseKeypoint,
    PromptToPromptAttn,
    PromptToPromptMaps,
    LoadArtifactEstimator,
    ArtifactEstimator,
    ArtifactEarlyReject,
]
