"""The peer side of `invigil bench recognize`: dlib's face_recognition on the
same frames, photos and labelled faces, timed the same way.

Input (JSON on stdin): {"frames": [png…], "photos": [path…],
"labelled": [png…], "iterations": N, "threads": T}.
Output (JSON on stdout): per-frame and per-photo latencies in ms, frames per
second on T processes, and one 128-d encoding (or null) per labelled face;
invigil scores the pairs itself so both sides share one ROC computation.
"""

import json
import sys
import time
from multiprocessing import Pool

import face_recognition


def frame_work(image):
    # The same work as invigil's per-frame step: detect, landmarks (align),
    # embed every face.
    locations = face_recognition.face_locations(image)
    return len(face_recognition.face_encodings(image, locations))


def timed(images, iterations):
    times = []
    for i in range(iterations):
        image = images[i % len(images)]
        start = time.perf_counter()
        frame_work(image)
        times.append((time.perf_counter() - start) * 1000.0)
    return times


_frames = []


def _init(paths):
    global _frames
    _frames = [face_recognition.load_image_file(p) for p in paths]


def _pool_job(i):
    return frame_work(_frames[i % len(_frames)])


def encoding(path):
    image = face_recognition.load_image_file(path)
    locations = face_recognition.face_locations(image)
    if not locations:
        return None
    largest = max(locations, key=lambda l: (l[2] - l[0]) * (l[1] - l[3]))
    return face_recognition.face_encodings(image, [largest])[0].tolist()


def main():
    job = json.load(sys.stdin)
    iterations = max(1, job["iterations"])
    frames = [face_recognition.load_image_file(p) for p in job["frames"]]
    photos = [face_recognition.load_image_file(p) for p in job["photos"]]
    for image in frames:  # warm-up, as on invigil's side
        frame_work(image)
    frame_ms = timed(frames, iterations)
    photo_ms = timed(photos, len(photos)) if photos else []

    threads = max(1, job["threads"])
    with Pool(threads, initializer=_init, initargs=(job["frames"],)) as pool:
        pool.map(_pool_job, range(threads))  # warm-up
        start = time.perf_counter()
        pool.map(_pool_job, range(iterations))
        throughput = iterations / (time.perf_counter() - start)

    labelled = [encoding(p) for p in job["labelled"]]
    json.dump(
        {
            "frame_ms": frame_ms,
            "photo_ms": photo_ms,
            "throughput": throughput,
            "threads": threads,
            "labelled": labelled,
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
