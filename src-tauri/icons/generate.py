#!/usr/bin/env python3
"""Draws Canopy's RGBA PNG icons (a tree crown over a trunk) with the standard library only.

usage: python3 src-tauri/icons/generate.py   (writes the PNGs next to this script)
"""
import pathlib
import struct
import zlib

HERE = pathlib.Path(__file__).resolve().parent
SIZES = {"32x32.png": 32, "128x128.png": 128, "128x128@2x.png": 256, "icon.png": 512}

BACKGROUND = (22, 33, 28)
CROWN = (76, 175, 110)
CROWN_LIGHT = (140, 214, 160)
TRUNK = (150, 105, 70)


def coverage(size, inside):
    """Anti-aliased coverage of a shape: 4x4 samples per pixel."""
    def pixel(x, y):
        hits = 0
        for sy in range(4):
            for sx in range(4):
                u = (x + (sx + 0.5) / 4) / size
                v = (y + (sy + 0.5) / 4) / size
                hits += inside(u, v)
        return hits / 16
    return pixel


def rounded_square(u, v, r=0.2):
    dx = max(abs(u - 0.5) - (0.5 - r), 0)
    dy = max(abs(v - 0.5) - (0.5 - r), 0)
    return dx * dx + dy * dy <= r * r


def crown(u, v):
    blobs = [(0.5, 0.36, 0.22), (0.32, 0.48, 0.16), (0.68, 0.48, 0.16), (0.5, 0.52, 0.18)]
    return any((u - x) ** 2 + (v - y) ** 2 <= r * r for x, y, r in blobs)


def highlight(u, v):
    return (u - 0.44) ** 2 + (v - 0.3) ** 2 <= 0.07 ** 2


def trunk(u, v):
    return 0.45 <= u <= 0.55 and 0.55 <= v <= 0.82


def render(size):
    layers = [
        (coverage(size, rounded_square), BACKGROUND),
        (coverage(size, trunk), TRUNK),
        (coverage(size, crown), CROWN),
        (coverage(size, highlight), CROWN_LIGHT),
    ]
    rows = []
    for y in range(size):
        row = bytearray([0])  # filter type: none
        for x in range(size):
            base = layers[0][0](x, y)
            r, g, b = BACKGROUND
            for cover, colour in layers[1:]:
                a = cover(x, y)
                if a:
                    r = r * (1 - a) + colour[0] * a
                    g = g * (1 - a) + colour[1] * a
                    b = b * (1 - a) + colour[2] * a
            row += bytes((round(r), round(g), round(b), round(base * 255)))
        rows.append(bytes(row))
    return b"".join(rows)


def png(size, raw):
    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)
    header = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)  # 8-bit RGBA
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def main():
    for name, size in SIZES.items():
        (HERE / name).write_bytes(png(size, render(size)))
        print(f"wrote {name} ({size}x{size})")


if __name__ == "__main__":
    main()
