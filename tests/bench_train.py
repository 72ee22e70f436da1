"""Benchmark: how long the seed recipe takes here, measured on synthetic PETS-style JPEGs.

Prints per-epoch seconds and images/second for a frozen (stage 1) and an unfrozen (stage 2) epoch,
inference throughput of an exported model, and the projected time of the full recipe on PETS
(5,912 training and 1,478 validation images; 3 frozen + 10 unfrozen epochs). Not a test: run it.

    python tests/bench_train.py --arch resnet50 --n 256 --bs 64           # CPU here
    python tests/bench_train.py --arch resnet50 --n 2048 --bs 64 --fp16   # on a CUDA machine
"""
import argparse, json, sys, tempfile, time
from pathlib import Path
import numpy as np, torch
from PIL import Image

PETS_TRAIN, PETS_VALID = 5912, 1478

def make_images(dest:Path, n:int, breeds:int=37, seed:int=0):
    "n JPEGs of about PETS's typical size (500x375), named like PETS, with content the model can learn a little."
    from pet_breeds.core import BREEDS
    rng = np.random.default_rng(seed)
    dest.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        b = i % breeds
        base = (np.array([b * 7 % 256, b * 53 % 256, b * 101 % 256]) * np.ones((375, 500, 3)))
        arr = np.clip(base + rng.normal(0, 40, (375, 500, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(dest/f'{BREEDS[b]}_{i}.jpg', quality=85)
    return dest

def timed_epoch(learn, stage:int, lr):
    (learn.freeze if stage == 1 else learn.unfreeze)()
    t = time.perf_counter()
    with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(1, lr)
    if torch.cuda.is_available(): torch.cuda.synchronize()
    return time.perf_counter() - t

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--arch', default='resnet50'); p.add_argument('--n', type=int, default=256)
    p.add_argument('--bs', type=int, default=64); p.add_argument('--size', type=int, default=224)
    p.add_argument('--item_size', type=int, default=460); p.add_argument('--workers', type=int, default=None)
    p.add_argument('--fp16', action='store_true', help='fastai to_fp16 (autocasts on CUDA only)')
    a = p.parse_args()
    from pet_breeds.data import pets_dataloaders
    from pet_breeds.learner import pets_learner
    from pet_breeds.inference import export_model, load_model
    from pet_breeds.core import open_image
    tmp = Path(tempfile.mkdtemp())
    t = time.perf_counter(); folder = make_images(tmp/'images', a.n); t_make = time.perf_counter() - t
    dls = pets_dataloaders(folder, bs=a.bs, item_size=a.item_size, size=a.size, num_workers=a.workers)
    # random weights: the speed of a pretrained model is the same, and no download is needed
    learn = pets_learner(dls, a.arch, pretrained=False)
    if a.fp16: learn = learn.to_fp16()
    n_train, n_valid = len(dls.train_ds), len(dls.valid_ds)
    timed_epoch(learn, 1, 1e-3)                       # warm-up: cudnn autotune, worker start, caches
    s1 = timed_epoch(learn, 1, 1e-3); s2 = timed_epoch(learn, 2, slice(1e-5, 1e-3))
    export_model(learn, tmp/'model'); pm = load_model(tmp/'model')
    imgs = [open_image(f) for f in dls.valid_ds.items]
    pm.probs(imgs[:a.bs])
    t = time.perf_counter(); pm.probs(imgs, bs=a.bs); t_inf = time.perf_counter() - t
    per_img1, per_img2 = s1 / (n_train + n_valid), s2 / (n_train + n_valid)
    projected = (3 * per_img1 + 10 * per_img2) * (PETS_TRAIN + PETS_VALID)
    res = {'device': torch.cuda.get_device_name() if torch.cuda.is_available() else f'cpu ({torch.get_num_threads()} threads)',
           'arch': a.arch, 'size': a.size, 'bs': a.bs, 'fp16': a.fp16, 'images': n_train + n_valid,
           'stage1_epoch_s': round(s1, 2), 'stage2_epoch_s': round(s2, 2),
           'stage1_img_per_s': round((n_train + n_valid) / s1, 1), 'stage2_img_per_s': round((n_train + n_valid) / s2, 1),
           'predict_img_per_s': round(len(imgs) / t_inf, 1),
           'projected_full_recipe_min': round(projected / 60, 1), 'made_images_s': round(t_make, 1)}
    print(json.dumps(res))
    for k, v in res.items(): print(f'{k:>26}: {v}')

if __name__ == '__main__': main()
