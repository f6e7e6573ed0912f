"""COCO-17 body keypoints: names, skeleton and left/right pairs (Lin et al. 2014, the COCO keypoint task)."""

COCO_17 = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)

# Limbs as pairs of joint indices (0-based; COCO's own list is 1-based).
SKELETON = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8), (7, 9), (8, 10),
    (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
)


def joint_colors() -> list[tuple[int, int, int]]:
    """One distinct, saturated RGB colour per joint (hues evenly spaced), for drawing and finding joints."""
    import colorsys

    return [tuple(int(round(c * 255)) for c in colorsys.hsv_to_rgb(i / len(COCO_17), 1.0, 1.0))
            for i in range(len(COCO_17))]
