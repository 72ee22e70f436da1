"""Measure `pet_breeds_audit` on real photos with planted mistakes (issue 20, part 3); the figures in 63_tools.audit.

    .venv/bin/python tests/audit_planted.py [--data DIR] [--seeds 5] [--json FILE]

DIR is `pets-37x10/images` (370 real photos, 10 per breed), given with --data: a folder the repository does not hold.
On copies of it, in a temporary folder:
1. random: 19 photos (5%) renamed to another breed drawn at random, for each seed; the first audit is the whole
   command in a fresh process with an empty cache (`python -m pet_breeds.audit`), the others run in this process
   on the warm feature cache (renaming does not change a photo's content, so only the labels change);
2. cat under dog: 5 cat photos renamed to a dog breed; 3. look-alike: one photo of each of 5 breeds renamed to
   the breed it is most often taken for (3 draws each);
4. the near-duplicate threshold: cosine similarity of distinct photos against that of edited copies;
`--methods_only`: cleanlab's ranking methods and filters compared on the draws of 1.
`--quality_only`: the range of the quality statistics on the real photos (where `QUALITY`'s thresholds must not reach).
Recall counts the planted photos among the top 2x (38 for 19) of `label_issues.csv`, precision among the top x.
Not collected by pytest (the name does not start with `test_`); it needs the real folder, which a clone lacks."""
from __future__ import annotations
import argparse, csv, json, math, os, shutil, subprocess, sys, tempfile, time
from pathlib import Path
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
LOOK_ALIKE = {'american_pit_bull_terrier': 'staffordshire_bull_terrier', 'Birman': 'Ragdoll', 'Egyptian_Mau': 'Bengal',
              'Russian_Blue': 'British_Shorthair', 'basset_hound': 'beagle'}

def plant(src:Path, dest:Path, moves:dict) -> list:
    "Hard-link (or copy) every photo of `src` into `dest`, `moves` (name -> new breed) under a new name; the new names."
    dest.mkdir(parents=True)
    new = []
    for k, f in enumerate(sorted(src.iterdir())):
        name = f'{moves[f.name]}_{9000 + k}{f.suffix}' if f.name in moves else f.name
        try: os.link(f, dest/name)
        except OSError: shutil.copy(f, dest/name)
        if f.name in moves: new.append(name)
    return new

def scores(report:Path, planted:list) -> dict:
    rows = list(csv.DictReader(open(report/'label_issues.csv')))
    files, n, p = [r['file'] for r in rows], len(planted), set(planted)
    flagged = [r['file'] for r in rows if r['flagged'] == 'True']
    return {'recall': len(p & set(files[:2*n])) / n, 'precision': len(p & set(files[:n])) / n,
            'ranks': sorted(files.index(f) + 1 for f in planted), 'flagged': len(flagged), 'flagged_planted': len(p & set(flagged))}

def near_threshold(src:Path, cache:Path, work:Path, backbone_sets:list) -> dict:
    "Cosine similarities of distinct photos, and of one photo per breed against edited copies of itself, per set of backbones."
    from PIL import Image
    from pet_breeds.core import breed_label, read_rgb
    from pet_breeds.data import pets_datablock
    from pet_breeds.probe import BackboneFeatures, probe_features
    from pet_breeds.probe_cv import join_features
    from pet_breeds.audit import NEAR
    files = sorted(src.glob('*.jpg'))
    one = list({breed_label(f): f for f in files}.values())
    work.mkdir()
    edits = {'half size, JPEG quality 60': lambda im: im.resize((im.width // 2, im.height // 2)),
             'cropped by 10%': lambda im: im.crop((im.width // 20, im.height // 20, im.width - im.width // 20, im.height - im.height // 20)),
             'mirrored': lambda im: im.transpose(Image.FLIP_LEFT_RIGHT)}
    edited = {k: [] for k in edits}
    for f in one:
        for i, (k, e) in enumerate(edits.items()):
            e(read_rgb(f)).save(work/f'{f.stem}_{i}.jpg', quality=60 if i == 0 else 90)   # read_rgb: upright, as the audit sees it
            edited[k].append(work/f'{f.stem}_{i}.jpg')
    allf, res = files + [g for v in edited.values() for g in v], {}
    for backbones in backbone_sets:
        branches = [BackboneFeatures(b) for b in backbones]
        size = max(b.size for b in branches)
        dls = pets_datablock(item_size=size, size=size, get_items=None, splitter=lambda o: (list(range(len(o))), [])).dataloaders(
            files, bs=32, num_workers=0)
        X = join_features(probe_features(branches, lambda fs: dls.test_dl(fs, bs=32), allf, size, cache), backbones)
        Xo, n = X[:len(files)], len(files)
        S = (Xo @ Xo.T).numpy()
        off = S[np.triu_indices(n, 1)]
        i, j = np.unravel_index(np.argmax(np.triu(S, 1)), S.shape)
        r = {'distinct_max': float(off.max()), 'distinct_at_or_above_NEAR': int((off >= NEAR).sum()), 'distinct_p999': float(np.quantile(off, 0.999)),
             'distinct_top5': sorted(map(float, off))[-5:], 'distinct_max_pair': [files[i].name, files[j].name]}
        at = {f: i for i, f in enumerate(files)}
        for j, (k, gs) in enumerate(edited.items()):
            Xe = X[n + j*len(one): n + (j+1)*len(one)]
            sims = [float(Xe[i] @ Xo[at[f]]) for i, f in enumerate(one)]
            r[k] = {'min': min(sims), 'median': float(np.median(sims)), 'at_or_above_NEAR': float(np.mean(np.array(sims) >= NEAR))}
        res['+'.join(backbones)] = r
        print('near', '+'.join(backbones), r, flush=True)
    return res

def compare_methods(src:Path, cache:Path, seeds:int=5) -> dict:
    "cleanlab's ranking methods and `find_label_issues` filters on the same planted draws (19 random renames), same features."
    import warnings
    from cleanlab.rank import get_label_quality_scores
    from cleanlab.filter import find_label_issues
    from pet_breeds.audit import AUDIT_BACKBONES
    from pet_breeds.core import breed_label
    from pet_breeds.data import pets_datablock
    from pet_breeds.probe import BackboneFeatures, probe_features
    from pet_breeds.probe_cv import join_features, cv_folds, cross_validate
    files = sorted(src.glob('*.jpg'))
    branches = [BackboneFeatures(b) for b in AUDIT_BACKBONES]
    size = max(b.size for b in branches)
    dls = pets_datablock(item_size=size, size=size, get_items=None, splitter=lambda o: (list(range(len(o))), [])).dataloaders(
        files, bs=32, num_workers=0)
    X = join_features(probe_features(branches, lambda fs: dls.test_dl(fs, bs=32), files, size, cache), AUDIT_BACKBONES)
    vocab = sorted({breed_label(f) for f in files}); y0 = np.array([vocab.index(breed_label(f)) for f in files])
    res = {}
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        bad = set(rng.choice(len(y0), 19, replace=False).tolist()); y = y0.copy()
        for i in bad: y[i] = rng.choice([c for c in range(len(vocab)) if c != y0[i]])
        p = cross_validate(X, y, len(vocab), cv_folds(y))['oof_probs']
        for m in ('self_confidence', 'normalized_margin', 'confidence_weighted_entropy'):
            o = np.argsort(get_label_quality_scores(y, p, method=m), kind='stable')
            res.setdefault(f'rank {m}', []).append((len(bad & set(o[:38].tolist())) / 19, len(bad & set(o[:19].tolist())) / 19))
        for fb in ('prune_by_noise_rate', 'both', 'low_self_confidence', 'low_normalized_margin'):
            with warnings.catch_warnings():
                warnings.simplefilter('ignore')
                fl = set(np.flatnonzero(find_label_issues(y, p, filter_by=fb, n_jobs=1)).tolist())
            res.setdefault(f'filter {fb}', []).append((len(bad & fl) / 19, len(bad & fl) / max(len(fl), 1)))
    return {k: [round(float(x), 3) for x in np.mean(v, 0)] for k, v in res.items()}   # (recall, precision)

def quality_ranges(folders:list) -> dict:
    "The range of `image_quality`'s statistics over the real photos of `folders`: where `QUALITY`'s thresholds must not reach."
    from pet_breeds.audit import image_quality
    qs = {f'{Path(d).parent.name}/{f.name}': image_quality(f) for d in folders for f in sorted(Path(d).glob('*.jpg'))}
    ok = {k: q for k, q in qs.items() if 'size' in q}
    side = min(min(q['size']) for q in ok.values())
    return {'photos': len(qs), 'readable': len(ok), 'shorter_side_min': side,
            'aspect_max': round(max(max(q['size']) / min(q['size']) for q in ok.values()), 3),
            'mean_min': min((q['mean'], k) for k, q in ok.items()), 'mean_max': max((q['mean'], k) for k, q in ok.items()),
            'std_min': min((q['std'], k) for k, q in ok.items()), 'flagged': {k: q['flags'] for k, q in qs.items() if q['flags']}}

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--data', required=True, help='the folder of pets-37x10 photos to plant mistakes in (a copy is used)')
    ap.add_argument('--seeds', type=int, default=5)
    ap.add_argument('--json', default=None)
    ap.add_argument('--near_only', action='store_true', help='only the near-duplicate threshold')
    ap.add_argument('--methods_only', action='store_true', help="only cleanlab's ranking methods and filters compared")
    ap.add_argument('--quality_only', action='store_true', help="only the ranges of the quality statistics on real photos")
    ap.add_argument('--cache', default=None, help='feature cache to use and keep (default: a temporary one, removed)')
    a = ap.parse_args()
    src = Path(a.data)
    if not src.is_dir(): sys.exit(f"{src}: not here; give --data pets-37x10/images")
    if a.quality_only: return print(quality_ranges([src, ROOT/'nbs'/'images'/'pets']))
    tmp = Path(tempfile.mkdtemp(prefix='audit-planted-'))
    if a.methods_only:
        for k, v in compare_methods(src, Path(a.cache or tmp/'cache')/'features', a.seeds).items(): print(f'{k:40s} recall {v[0]:.2f} precision {v[1]:.2f}')
        return shutil.rmtree(tmp, ignore_errors=True)
    cache_root = Path(a.cache) if a.cache else tmp/'cache'
    files = sorted(p.name for p in src.glob('*.jpg'))
    from pet_breeds.core import breed_label, CAT_BREEDS, DOG_BREEDS
    breeds = sorted({breed_label(f) for f in files})
    out = {'photos': len(files), 'random': [], 'cat_under_dog': [], 'look_alike': []}
    for seed in range(0 if a.near_only else a.seeds):
        rng = np.random.default_rng(seed)
        pick = rng.choice(files, math.ceil(0.05 * len(files)), replace=False)   # 19 of 370
        moves = {f: rng.choice([b for b in breeds if b != breed_label(f)]) for f in pick}
        d, rep = tmp/f'random{seed}', tmp/f'report-random{seed}'
        planted = plant(src, d, moves)
        t0 = time.perf_counter()
        if seed == 0:   # the whole command, a fresh process, an empty cache
            r = subprocess.run([sys.executable, '-m', 'pet_breeds.audit', str(d), '--out', str(rep)], capture_output=True,
                               text=True, env={**os.environ, 'PET_BREEDS_CACHE': str(cache_root)})
            if r.returncode: sys.exit(r.stderr[-3000:])
            print(r.stdout)
        else:
            from pet_breeds.audit import audit
            audit(d, rep, cache_dir=cache_root/'features')
        s = {**scores(rep, planted), 'seconds': round(time.perf_counter() - t0, 1), 'cold': seed == 0,
             'cv_accuracy': json.loads((rep/'summary.json').read_text())['cv_accuracy']}
        out['random'].append(s); print('random', seed, s, flush=True)
        shutil.rmtree(d)
    from pet_breeds.audit import audit
    cats = [f for f in files if breed_label(f) in CAT_BREEDS]
    for kind in () if a.near_only else ('cat_under_dog', 'look_alike'):
        for seed in range(3):
            rng = np.random.default_rng(100 + seed)
            if kind == 'cat_under_dog': moves = {f: rng.choice(DOG_BREEDS) for f in rng.choice(cats, 5, replace=False)}
            else: moves = {rng.choice([f for f in files if breed_label(f) == b]): t for b, t in LOOK_ALIKE.items()}
            d, rep = tmp/f'{kind}{seed}', tmp/f'report-{kind}{seed}'
            planted = plant(src, d, moves)
            t0 = time.perf_counter()
            audit(d, rep, cache_dir=cache_root/'features')
            s = {**scores(rep, planted), 'seconds': round(time.perf_counter() - t0, 1)}
            out[kind].append(s); print(kind, seed, s, flush=True)
            shutil.rmtree(d)
    from pet_breeds.audit import AUDIT_BACKBONES
    out['near'] = near_threshold(src, cache_root/'features', tmp/'edited', [AUDIT_BACKBONES, ['efficientnet_lite0']])
    for k in ('random', 'cat_under_dog', 'look_alike'):
        rs = out[k]
        if not rs: continue
        print(f"| {k} | recall@2x {np.mean([r['recall'] for r in rs]):.2f} (min {min(r['recall'] for r in rs):.2f}) | "
              f"precision@x {np.mean([r['precision'] for r in rs]):.2f} (min {min(r['precision'] for r in rs):.2f}) | "
              f"flagged {np.mean([r['flagged'] for r in rs]):.1f} ({np.mean([r['flagged_planted'] for r in rs]):.1f} planted) | "
              f"in the top 38 {np.mean([sum(k <= 38 for k in r['ranks']) / len(r['ranks']) for r in rs]):.2f} | "
              f"seconds {[r['seconds'] for r in rs]} |")
    if a.json: Path(a.json).write_text(json.dumps(out, indent=1))
    shutil.rmtree(tmp, ignore_errors=True)

if __name__ == '__main__': main()
