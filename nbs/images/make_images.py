"""How nbs/images was made, from the repository root: `python nbs/images/make_images.py SRC`, SRC
being a folder of the dataset's photos of the three breeds. The notebooks and tests use the
committed result, never SRC."""
import shutil, sys
from pathlib import Path
import numpy as np
from PIL import Image

SRC = Path(sys.argv[1]) if len(sys.argv) > 1 else None   # PETS photos of Abyssinian, Bengal and american_bulldog
PETS, ODD = Path('nbs/images/pets'), Path('nbs/images/odd')
SIZE, QUALITY = 288, 84        # as the bundled sample (pet_breeds/sample): small files, plenty for 224 px
NUMBERS = [*range(1, 23), 30, 34, 44, 57, 77, 100]   # 1-22 for each breed, and the numbers the notebooks name

def shrink(img, size=SIZE):
    "`img` scaled (LANCZOS) so that its shorter side is `size`; never scaled up."
    w, h = img.size
    if min(w, h) <= size: return img
    s = size / min(w, h)
    return img.resize((size, round(h*s)) if w <= h else (round(w*s), size), Image.LANCZOS)

def main():
    if SRC is None: sys.exit('usage: python nbs/images/make_images.py SRC (a folder of PETS photos)')
    for d in (PETS, ODD): d.mkdir(parents=True, exist_ok=True)
    for breed in ('Abyssinian', 'Bengal', 'american_bulldog'):
        for n in NUMBERS:
            f = SRC/f'{breed}_{n}.jpg'
            if not f.exists(): continue
            with Image.open(f) as im:
                if im.format != 'JPEG' or im.mode != 'RGB': shutil.copyfile(f, PETS/f.name)   # the dataset's odd files, byte for byte
                else: shrink(im).save(PETS/f.name, format='JPEG', quality=QUALITY, optimize=True)
    shutil.copyfile(SRC/'Abyssinian_100.mat', PETS/'Abyssinian_100.mat')   # the dataset ships .mat files beside the photos: loaders must skip them
    # Oddities the full dataset (or a user's folder) has and these three breeds do not, made from real photos.
    base = shrink(Image.open(SRC/'Bengal_57.jpg').convert('RGB'))
    base.convert('CMYK').save(ODD/'cmyk.jpg', quality=QUALITY)
    base.convert('L').save(ODD/'grayscale.jpg', quality=QUALITY)
    Image.fromarray((np.asarray(base.convert('L'), dtype=np.uint16) * 257)).save(ODD/'sixteen_bit.png')
    exif = Image.Exif(); exif[0x0112] = 6   # Orientation 6: the viewer turns it 90 degrees clockwise
    base.transpose(Image.ROTATE_90).save(ODD/'exif_rotated.jpg', quality=QUALITY, exif=exif)
    base.resize((12, 9), Image.LANCZOS).save(ODD/'tiny.jpg', quality=QUALITY)
    big = max(SRC.glob('*.jpg'), key=lambda f: (Image.open(f).size[0] * Image.open(f).size[1]))
    shutil.copyfile(big, ODD/'large.jpg')                                          # the largest photo, as shipped

if __name__ == '__main__': main()
