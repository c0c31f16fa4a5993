"""Render the face rig's contact sheet: the neutral face and every blendshape at weight 1.

    python scripts/face_contact_sheet.py [-o docs/face-contact-sheet.png] [--glb RIG.glb]

Two shapes are shown as ARKit rigs are meant to be used: ``mouthClose`` together with
``jawOpen`` (it closes the lips of an open jaw) and ``tongueOut`` with the jaw half open.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont
from tqdm import tqdm

from audio2anim.face import Camera, Renderer, load_glb
from audio2anim.face.rig import DEFAULT_GLB

COMPANIONS = {"mouthClose": {"jawOpen": 1.0}, "tongueOut": {"jawOpen": 0.5}}


def contact_sheet(glb: Path, tile: int = 200, columns: int = 8) -> Image.Image:
    rig = load_glb(glb)
    cam = Camera(target=(0.0, -0.002, 0.03), distance=0.53)
    tiles = [("neutral", {})]
    for name in rig.target_names:
        pose = {name: 1.0, **COMPANIONS.get(name, {})}
        label = name + (" +jaw" if name in COMPANIONS else "")
        tiles.append((label, pose))
    font = ImageFont.load_default(size=15)
    label_h = 22
    rows = -(-len(tiles) // columns)
    sheet = Image.new("RGB", (columns * tile, rows * (tile + label_h)), (24, 26, 32))
    draw = ImageDraw.Draw(sheet)
    with Renderer(rig, tile, camera=cam, msaa=4) as r:
        for i, (label, pose) in enumerate(tqdm(tiles, desc="contact sheet")):
            x, y = (i % columns) * tile, (i // columns) * (tile + label_h)
            sheet.paste(Image.fromarray(r.render(pose)), (x, y))
            w = draw.textlength(label, font=font)
            draw.text((x + (tile - w) / 2, y + tile + 3), label, fill=(225, 228, 235), font=font)
    return sheet


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", type=Path, default=Path("docs/face-contact-sheet.png"))
    ap.add_argument("--glb", type=Path, default=DEFAULT_GLB)
    ap.add_argument("--tile", type=int, default=200)
    args = ap.parse_args()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    contact_sheet(args.glb, args.tile).save(args.output, optimize=True)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
