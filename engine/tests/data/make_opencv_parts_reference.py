"""Writes the OpenCV reference layouts with hands and face used by engine/tests/layout.rs.

Each pose set is drawn as ControlNet 1.1's full OpenPose annotator draws it (annotator/openpose
util.py, pose_formats.md section 3): the body as make_opencv_reference.py draws it; then, for each
person, the left and then the right hand: its 20 edges as cv2.line of thickness 2 in
hsv_to_rgb([i / 20, 1, 1]) * 255, then its points as filled cv2.circle of radius 4 in (0, 0, 255);
then every face point as a filled white cv2.circle of radius 3. A point is truncated to integer
pixels and skipped unless both integers exceed eps = 0.01. The sizes are the annotator's at 512 px
and scale by max(W, H) / 512 like the stick width. opencv_parts_320x240 is written normalised, so
that the annotator's int(x * W) is checked too.

OpenCV 4.13 and later clip a thick line to the image grown by its thickness before drawing, which
moves a few border pixels of lines that run past the right or bottom edge; the references (and the
engine) follow the earlier releases that the annotator ran with, hence the pinned version.
Run: pip install opencv-python-headless==4.12.0.88 numpy matplotlib && python3 make_opencv_parts_reference.py
"""
import json, math, random
import cv2
import matplotlib.colors
import numpy as np
from make_opencv_reference import render

HAND_EDGES = [(0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (5, 6), (6, 7), (7, 8), (0, 9), (9, 10), (10, 11),
              (11, 12), (0, 13), (13, 14), (14, 15), (15, 16), (0, 17), (17, 18), (18, 19), (19, 20)]
EPS = 0.01


def size(base, w, h):
    return max(1, round(base * max(w, h) / 512))


def draw_handpose(canvas, peaks, scale, bone, radius):
    for ie, (e1, e2) in enumerate(HAND_EDGES):
        if peaks[e1] is None or peaks[e2] is None:
            continue
        x1, y1 = int(peaks[e1][0] * scale[0]), int(peaks[e1][1] * scale[1])
        x2, y2 = int(peaks[e2][0] * scale[0]), int(peaks[e2][1] * scale[1])
        if x1 > EPS and y1 > EPS and x2 > EPS and y2 > EPS:
            color = matplotlib.colors.hsv_to_rgb([ie / float(len(HAND_EDGES)), 1.0, 1.0]) * 255
            cv2.line(canvas, (x1, y1), (x2, y2), color, thickness=bone)
    for p in peaks:
        if p is None:
            continue
        x, y = int(p[0] * scale[0]), int(p[1] * scale[1])
        if x > EPS and y > EPS:
            cv2.circle(canvas, (x, y), radius, (0, 0, 255), thickness=-1)


def draw_facepose(canvas, lmks, scale, radius):
    for p in lmks:
        if p is None:
            continue
        x, y = int(p[0] * scale[0]), int(p[1] * scale[1])
        if x > EPS and y > EPS:
            cv2.circle(canvas, (x, y), radius, (255, 255, 255), thickness=-1)


def hand(rng, wx, wy, length, missing=0.08, theta=None):
    """21 points: the wrist, then four per finger fanned around a direction (random if None)."""
    theta = rng.uniform(0, 2 * math.pi) if theta is None else theta
    pts = [(wx, wy)]
    for f in range(5):
        a = theta + (f - 2) * 0.38 + rng.gauss(0, 0.05)
        for j in range(4):
            r = length * (0.3 + 0.18 * j) * (0.8 if f == 0 else 1.0)
            pts.append((wx + r * math.cos(a) + rng.gauss(0, 0.6), wy + r * math.sin(a) + rng.gauss(0, 0.6)))
    return [None if rng.random() < missing else p for p in pts]


def face(rng, cx, cy, r, missing=0.05):
    """68 landmarks round an oval plus 2 pupils."""
    pts = [(cx + r * 0.8 * math.cos(t) + rng.gauss(0, 0.5), cy + r * math.sin(t) + rng.gauss(0, 0.5))
           for t in (math.pi * k / 67 for k in range(68))]
    pts += [(cx - 0.3 * r, cy - 0.2 * r), (cx + 0.3 * r, cy - 0.2 * r)]
    return [None if rng.random() < missing else p for p in pts]


def flat(points):
    return sum(([p[0], p[1], 1.0] if p else [0, 0, 0] for p in points), [])


def make(name, w, h, n, rng, normalized):
    scale = (w, h) if normalized else (1, 1)
    bone, hand_r, face_r = size(2, w, h), size(4, w, h), size(3, w, h)
    people = []
    for i in range(n):
        cx, cy, s = rng.uniform(0.2, 0.8) * w, rng.uniform(0.3, 0.7) * h, rng.uniform(0.25, 0.5) * h
        body = [None if rng.random() < 0.1 else
                (min(max(cx + rng.gauss(0, 0.3) * s, 8), w - 9), min(max(cy + rng.gauss(0, 0.4) * s, 8), h - 9))
                for _ in range(18)]
        length = 0.6 * s
        left = hand(rng, *(body[7] or (cx - 0.3 * s, cy)), length)
        right = hand(rng, *(body[4] or (cx + 0.3 * s, cy)), length)
        fc = face(rng, *(body[0] or (cx, cy - 0.4 * s)), 0.12 * s)
        people.append({"body": body, "left": left, "right": right, "face": fc})
    # the edge cases: hands across the right and bottom edges and the top-left corner (points
    # with a coordinate below 1 are skipped), a zero-length bone, a person without a face
    p = people[0]
    p["right"] = hand(rng, w - 3, rng.uniform(0.3, 0.7) * h, 0.15 * max(w, h), 0, math.pi / 2)
    p["left"] = hand(rng, rng.uniform(0.3, 0.7) * w, h - 2, 0.15 * max(w, h), 0, 0.1)
    q = people[1]
    q["left"] = hand(rng, 3.5, 2.5, 0.08 * max(w, h), 0)
    q["left"][5] = (0.6, 14.0)
    q["left"][9] = (15.0, 1.4)
    q["right"][2] = q["right"][1]
    q["face"] = None
    # what the file stores (normalised or pixels), and the pixels a reader gets back from it
    stored = [{k: None if v is None else [None if t is None else (t[0] / scale[0], t[1] / scale[1]) for t in v]
               for k, v in p.items()} for p in people]
    canvas = render([[None if t is None else (t[0] * scale[0], t[1] * scale[1]) for t in p["body"]]
                     for p in stored], w, h)
    for p in stored:
        for hd in (p["left"], p["right"]):
            draw_handpose(canvas, hd, scale, bone, hand_r)
    for p in stored:
        if p["face"] is not None:
            draw_facepose(canvas, p["face"], scale, face_r)
    doc = {"people": [{"pose_keypoints_2d": flat(p["body"]),
                       "hand_left_keypoints_2d": flat(p["left"]),
                       "hand_right_keypoints_2d": flat(p["right"]),
                       "face_keypoints_2d": None if p["face"] is None else flat(p["face"])}
                      for p in stored], "canvas_width": w, "canvas_height": h}
    json.dump(doc, open(name + ".json", "w"))
    cv2.imwrite(name + ".png", cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))


if __name__ == "__main__":
    rng = random.Random(2027)
    make("opencv_parts_512x512", 512, 512, 3, rng, False)
    make("opencv_parts_320x240", 320, 240, 3, rng, True)
    make("opencv_parts_768x640", 768, 640, 3, rng, False)
