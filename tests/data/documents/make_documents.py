"""Renders the specimen ID documents the document tests read.

A card with printed text, a face photo from tests/data/faces/orl and an
ICAO 9303 specimen MRZ, set in DejaVu Sans Mono (Debian fonts-dejavu-core),
then photographed: turned a little on a desk-coloured background and saved
as JPEG. Run from this directory with Pillow installed:

    python3 make_documents.py /usr/share/fonts/truetype/dejavu
"""

import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

FONTS = Path(sys.argv[1] if len(sys.argv) > 1 else "/usr/share/fonts/truetype/dejavu")
FACES = Path(__file__).resolve().parent.parent / "faces" / "orl"

# ICAO 9303 part 4 (TD3) and part 5 (TD1) specimens, check digits as published.
TD3 = [
    "P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<",
    "L898902C36UTO7408122F1204159ZE184226B<<<<<10",
]
TD1 = [
    "I<UTOD231458907<<<<<<<<<<<<<<<",
    "7408122F1204159UTO<<<<<<<<<<<6",
    "ERIKSSON<<ANNA<MARIA<<<<<<<<<<",
]


def font(name, size):
    return ImageFont.truetype(str(FONTS / name), size)


def card(size, title, fields, mrz, mrz_size, face):
    w, h = size
    img = Image.new("RGB", size, (236, 232, 214))
    d = ImageDraw.Draw(img)
    d.rectangle([0, 0, w - 1, 70], fill=(40, 70, 120))
    d.text((30, 16), title, font=font("DejaVuSans-Bold.ttf", 34), fill=(255, 255, 255))
    photo = Image.open(FACES / face).convert("RGB").resize((184, 224), Image.LANCZOS)
    img.paste(photo, (40, 100))
    label = font("DejaVuSans.ttf", 16)
    value = font("DejaVuSans-Bold.ttf", 24)
    y = 100
    for key, val in fields:
        d.text((260, y), key, font=label, fill=(90, 90, 90))
        d.text((260, y + 18), val, font=value, fill=(20, 20, 20))
        y += 54
    mono = font("DejaVuSansMono.ttf", mrz_size)
    line_h = int(mrz_size * 1.35)
    top = h - 24 - line_h * len(mrz)
    d.rectangle([0, top - 14, w - 1, h - 1], fill=(250, 250, 246))
    for i, line in enumerate(mrz):
        d.text((30, top + i * line_h), line, font=mono, fill=(0, 0, 0))
    return img


def photograph(doc, angle, out):
    """The card on a desk, turned by `angle` degrees, as a phone would save it."""
    turned = doc.rotate(angle, resample=Image.BICUBIC, expand=True, fillcolor=(120, 98, 72))
    w, h = turned.size
    desk = Image.new("RGB", (w + 120, h + 120), (120, 98, 72))
    desk.paste(turned, (60, 60))
    desk.save(out, quality=90)


def main():
    fields = [
        ("Surname", "ERIKSSON"),
        ("Given names", "ANNA MARIA"),
        ("Nationality", "UTOPIAN"),
        ("Date of birth", "12 AUG 1974"),
        ("Date of expiry", "15 APR 2012"),
    ]
    passport = card((1100, 660), "UTOPIA  PASSPORT", fields, TD3, 22, "s1/1.pgm")
    photograph(passport, 2.0, "passport_td3.jpg")
    idcard = card((1000, 640), "UTOPIA  IDENTITY CARD", fields[:4], TD1, 30, "s2/1.pgm")
    photograph(idcard, -1.5, "idcard_td1.jpg")


main()
