"""Writes the OpenCV reference layouts used by engine/tests/layout.rs.

Each pose set is drawn with OpenCV exactly as ControlNet 1.1 / controlnet_aux describe the
OpenPose rendering (pose_formats.md section 3): for each limb, for each person, a filled convex
polygon from cv2.ellipse2Poly in colour x 0.6; then every joint as a filled cv2.circle.
Run: pip install opencv-python-headless numpy && python3 make_opencv_reference.py
(hands and face: make_opencv_parts_reference.py)
"""
import json, math, random
import cv2
import numpy as np

LIMBS = [(1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12),
         (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17)]
COLORS = [[255, 0, 0], [255, 85, 0], [255, 170, 0], [255, 255, 0], [170, 255, 0], [85, 255, 0],
          [0, 255, 0], [0, 255, 85], [0, 255, 170], [0, 255, 255], [0, 170, 255], [0, 85, 255],
          [0, 0, 255], [85, 0, 255], [170, 0, 255], [255, 0, 255], [255, 0, 170], [255, 0, 85]]


def render(people, w, h):
    stick = max(1, round(4 * max(w, h) / 512))
    canvas = np.zeros((h, w, 3), np.uint8)
    for i, (a, b) in enumerate(LIMBS):
        for p in people:
            if p[a] is None or p[b] is None:
                continue
            (x1, y1), (x2, y2) = p[a], p[b]
            length = math.hypot(x1 - x2, y1 - y2)
            angle = math.degrees(math.atan2(y1 - y2, x1 - x2))
            poly = cv2.ellipse2Poly((int((x1 + x2) / 2), int((y1 + y2) / 2)), (int(length / 2), stick),
                                    int(angle), 0, 360, 1)
            cv2.fillConvexPoly(canvas, poly, [int(c * 0.6) for c in COLORS[i]])
    for j in range(18):
        for p in people:
            if p[j] is not None:
                cv2.circle(canvas, (int(p[j][0]), int(p[j][1])), stick, COLORS[j], thickness=-1)
    return canvas


def main():
    rng = random.Random(2026)
    for name, (w, h, n) in {"opencv_ref_320x240": (320, 240, 3), "opencv_ref_768x512": (768, 512, 4)}.items():
        people = []
        for _ in range(n):
            cx, cy, s = rng.uniform(0.2, 0.8) * w, rng.uniform(0.3, 0.7) * h, rng.uniform(0.2, 0.5) * h
            people.append([None if rng.random() < 0.1 else
                           (min(max(cx + rng.gauss(0, 0.3) * s, 8), w - 9), min(max(cy + rng.gauss(0, 0.4) * s, 8), h - 9))
                           for _ in range(18)])
        doc = {"people": [{"pose_keypoints_2d": sum(([x, y, 1.0] if q else [0, 0, 0] for q in p for x, y in [q or (0, 0)]), [])}
                          for p in people], "canvas_width": w, "canvas_height": h}
        json.dump(doc, open(name + ".json", "w"))
        cv2.imwrite(name + ".png", cv2.cvtColor(render(people, w, h), cv2.COLOR_RGB2BGR))


# make_opencv_parts_reference.py reuses render() without rewriting these files
if __name__ == "__main__":
    main()
