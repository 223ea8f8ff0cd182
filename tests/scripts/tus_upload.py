"""Uploads a file to invigil with tuspy (the tus project's Python client):
a few chunks, a pause, a new client that resumes from the server's offset,
one chunk sent twice, and the rest. Prints the upload URL on success.

usage: tus_upload.py ENDPOINT COOKIE FILE CHUNK_SIZE
The CA bundle for the server's certificate comes from REQUESTS_CA_BUNDLE.
"""

import hashlib
import sys
import time

from tusclient import client
from tusclient.uploader import Uploader

# tus's checksum extension lets the client pick; invigil offers sha256.
Uploader.CHECKSUM_ALGORITHM_PAIR = ("sha256", hashlib.sha256)

endpoint, cookie, path, chunk = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
origin = endpoint.split("/api/")[0]
headers = {"Cookie": f"__Host-invigil={cookie}", "Origin": origin}
metadata = {"kind": "webcam", "filetype": "video/webm", "filename": "webcam.webm"}

first = client.TusClient(endpoint, headers=headers).uploader(
    path, chunk_size=chunk, metadata=metadata, upload_checksum=True
)
first.upload_chunk()
first.upload_chunk()
url = first.url
time.sleep(0.2)

# A new client (a reloaded page) resumes from the offset the server reports.
second = client.TusClient(endpoint, headers=headers).uploader(
    path, url=url, chunk_size=chunk, upload_checksum=True
)
assert second.offset == 2 * chunk, f"resumed at {second.offset}"
second.upload_chunk()

# The same chunk again (a response lost on the way): acknowledged, no change.
second.offset -= chunk
second.upload_chunk()
assert second.offset == 3 * chunk, f"after the repeat: {second.offset}"

second.upload()
assert second.get_offset() == second.get_file_size()
print(url)
