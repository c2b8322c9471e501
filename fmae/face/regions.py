"""The seven facial regions of the paper, in masking-priority order."""

from enum import IntEnum


class FaceRegion(IntEnum):
    """Region ids of a region map (``uint8``); a lower id is masked earlier.

    The order is the paper's priority (Algorithm 1): the eyes, nose and mouth carry
    most of the expression and are hidden first; hair, skin and background last.
    Left and right are the subject's own (the subject's left eye is on the image's
    right).
    """

    LEFT_EYE = 0
    RIGHT_EYE = 1
    NOSE = 2
    MOUTH = 3
    HAIR = 4
    SKIN = 5
    BACKGROUND = 6


NUM_REGIONS: int = len(FaceRegion)
