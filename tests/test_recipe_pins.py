"""The PETS recipe, pinned at the entry points: seed 42, 20% validation, `Resize(460)`, `aug_transforms(size=224,
min_scale=0.75)` with its flips, rotation, lighting and warp, stage 1 `fit_one_cycle(3, lr_find's valley)` with the
body frozen, stage 2 `fit_one_cycle(10, slice(1e-5, 1e-3))` unfrozen, its per-group rates read from the optimizer.
And the model file's format and version checks.

Each is checked as the code behaves, not only as its signature reads: the learning rates are those the optimizer
holds at the one-cycle peak (fastai's real `fit_one_cycle` and `ParamScheduler` set them; the spy then skips the
batches), the split is compared with fastai's `RandomSplitter(0.2, seed=42)`, the transforms are read from the built
`DataLoaders`. `lr_find` is replaced by a spy returning a fixed valley, so that stage 1 must be seen to use it."""
import collections, inspect, json
from pathlib import Path
import numpy as np, pytest, torch
from torch import nn
from fastai.vision.all import (Learner, Callback, CancelFitException, ParamScheduler, RandomSplitter, Resize,
                               AffineCoordTfm, RandomResizedCropGPU, LightingTfm, Normalize)
from pet_breeds.core import PetBreedsError, RECIPE, Recipe
from pet_breeds import train_cli as cli, runtime
from pet_breeds.probe import choose_mode
from pet_breeds.train_cli import train_pets
from pet_breeds.data import pets_dataloaders, pets_datablock, pets_transforms, scan_images
from pet_breeds.augment import AffineCropGPU, unfused
from pet_breeds.learner import pets_learner
from pet_breeds.train import TrainSpec, Stage, train_two_stage, train_finetune, lr_find_iterations, TRAIN_BN
from pet_breeds.inference import read_meta, load_model
from conftest import make_synthetic_pets

VALLEY = 1.23e-3                          # the spy's lr_find result: no recipe rate is this
STAGE2 = [1e-5, 1e-4, 1e-3]               # slice(1e-5, 1e-3) over a ResNet's three parameter groups

# --- spies ---------------------------------------------------------------------------------------

class PeakLRs(Callback):
    """After the real `ParamScheduler` is set up, step it through the cycle and record each parameter group's
    highest learning rate as the optimizer holds it; then cancel the fit (no batch is run)."""
    order = ParamScheduler.order + 1
    def __init__(self, record): self.record = record
    def before_fit(self):
        sched = [cb for cb in self.learn.cbs if isinstance(cb, ParamScheduler)]
        assert len(sched) == 1, "fit_one_cycle runs one ParamScheduler"
        peaks = None
        for pct in np.linspace(0, 1, 401):
            sched[0]._update_val(pct)                       # what it does before every batch
            lrs = [float(h['lr']) for h in self.opt.hypers]
            peaks = lrs if peaks is None else [max(a, b) for a, b in zip(peaks, lrs)]
        self.record['peak_lrs'] = peaks
        raise CancelFitException()

@pytest.fixture
def spies(monkeypatch):
    "Record every `lr_find` and `fit_one_cycle` call (arguments, freezing, callbacks, the optimizer's peak rates)."
    calls = {'lr_find': [], 'fit': []}
    Suggested = collections.namedtuple('SuggestedLRs', ['valley', 'minimum', 'steep'])
    def lr_find(self, start_lr=1e-7, end_lr=10, num_it=100, stop_div=True, show_plot=True, suggest_funcs=None):
        calls['lr_find'].append({'num_it': num_it})
        return Suggested(VALLEY, VALLEY / 10, VALLEY * 3)
    real_fit_one_cycle = Learner.fit_one_cycle
    def fit_one_cycle(self, n_epoch, lr_max=None, *args, cbs=None, **kwargs):
        rec = {'n_epoch': n_epoch, 'lr_max': lr_max, 'learn': self,
               'convs_trainable': [m.weight.requires_grad for m in self.model[0].modules() if isinstance(m, nn.Conv2d)],
               'all_trainable': [p.requires_grad for p in self.model.parameters()],
               'cbs': [type(c).__name__ for c in (cbs or [])]}
        calls['fit'].append(rec)
        real_fit_one_cycle(self, n_epoch, lr_max, *args, cbs=[*(cbs or []), PeakLRs(rec)], **kwargs)
    monkeypatch.setattr(Learner, 'lr_find', lr_find)
    monkeypatch.setattr(Learner, 'fit_one_cycle', fit_one_cycle)
    return calls

def _assert_recipe_stages(calls, stage1_epochs=3, stage2_epochs=10):
    assert len(calls['lr_find']) == 1, "stage 1's rate comes from one lr_find"
    (s1, s2) = calls['fit']
    n = len(s1['learn'].dls.train)
    assert calls['lr_find'][0]['num_it'] == lr_find_iterations(n, stage1_epochs + stage2_epochs)
    assert (s1['n_epoch'], s2['n_epoch']) == (stage1_epochs, stage2_epochs)
    # stage 1: lr_find's valley, one rate for every group, the body frozen
    assert s1['lr_max'] == pytest.approx(VALLEY)
    assert s1['peak_lrs'] == pytest.approx([VALLEY] * len(s1['peak_lrs']), rel=1e-6)
    assert not any(s1['convs_trainable']) and any(s1['all_trainable']), "stage 1 trains the head, the body frozen"
    # stage 2: slice(1e-5, 1e-3): discriminative rates, as the optimizer holds them at the cycle's peak
    assert isinstance(s2['lr_max'], slice) and (s2['lr_max'].start, s2['lr_max'].stop) == (1e-5, 1e-3)
    assert s2['peak_lrs'] == pytest.approx(STAGE2, rel=1e-6)
    assert all(s2['all_trainable']), "stage 2 trains the whole network"

# --- data ----------------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def folder(tmp_path_factory):
    return make_synthetic_pets(tmp_path_factory.mktemp('pins')/'images', n=12, size=40)

def _defaults(f) -> dict:
    return {k: p.default for k, p in inspect.signature(f).parameters.items() if p.default is not inspect.Parameter.empty}

def test_the_recipe_is_the_lessons():
    "The one place the numbers are written: `RECIPE` (00_core); every entry point takes its defaults from it."
    assert RECIPE == Recipe(arch='resnet50', item_size=460, size=224, min_scale=0.75, valid_pct=0.2, seed=42, bs=64,
                            freeze_epochs=3, epochs=10, lr_max=(1e-5, 1e-3))

def test_entry_point_defaults_are_the_recipe():
    want = {k: getattr(RECIPE, k) for k in ('seed', 'valid_pct', 'item_size', 'min_scale')}
    for f in (pets_dataloaders, pets_datablock, train_pets):
        d = _defaults(f)
        assert {k: d[k] for k in want} == want, f.__name__
    assert _defaults(pets_dataloaders)['size'] == _defaults(pets_datablock)['size'] == RECIPE.size
    assert _defaults(pets_transforms) == {'item_size': RECIPE.item_size, 'size': RECIPE.size, 'min_scale': RECIPE.min_scale}
    d = _defaults(train_pets)
    assert (d['arch'], d['pretrained'], d['mode'], d['freeze_epochs'], d['epochs'], tuple(d['lr_max']), d['lr'], d['label']) \
        == (None, True, 'auto', RECIPE.freeze_epochs, RECIPE.epochs, RECIPE.lr_max, None, 'breed')
    assert choose_mode(7390, 37)[0] == 'finetune', "on PETS itself `auto` runs this recipe (with resnet50 for arch=None)"
    d = _defaults(train_two_stage)
    assert (d['freeze_epochs'], d['epochs'], d['lr'], d['lr_max']) == \
        (RECIPE.freeze_epochs, RECIPE.epochs, None, slice(*RECIPE.lr_max))
    spec = TrainSpec()
    assert (spec.arch, spec.pretrained, spec.freeze_epochs, spec.epochs, spec.lr, tuple(spec.lr_max)) \
        == (RECIPE.arch, True, RECIPE.freeze_epochs, RECIPE.epochs, None, RECIPE.lr_max)
    assert Stage(3).lr is None and Stage(3).frozen is None and Stage(3).train_bn is TRAIN_BN is False

def test_lr_find_iterations():
    "~15% of a short run, at least 20 (26_train checks fastai's 100 on the full PETS run)."
    assert [lr_find_iterations(n, e) for n, e in [(1, 1), (10, 13), (20, 10), (50, 4), (51, 1), (200, 1)]] == \
        [20, 20, 30, 30, 20, 30]

def _split(files, **kw):
    train, valid = RandomSplitter(**kw)(files)
    return {files[i] for i in valid}

def test_validation_split_is_random_splitter_02_seed_42(folder):
    files = sorted(scan_images(folder).images)
    dls = pets_dataloaders(folder, bs=8, item_size=48, size=32, num_workers=0, cache=False)
    valid = set(dls.valid_ds.items)
    assert len(valid) == int(0.2 * len(files)) and set(dls.train_ds.items) == set(files) - valid
    assert valid == _split(files, valid_pct=0.2, seed=42)
    assert valid != _split(files, valid_pct=0.2, seed=0), "the folder is big enough for the seed to matter"
    assert dls.recipe['seed'] == 42 and dls.recipe['valid_pct'] == 0.2
    # the same again: the split does not depend on the global random state
    torch.manual_seed(7)
    assert set(pets_dataloaders(folder, bs=8, item_size=48, size=32, num_workers=0, cache=False).valid_ds.items) == valid

def _aug_parts(after_batch) -> dict:
    "What fastai merged `aug_transforms` into: affine matrices by function, coordinate and lighting functions by class."
    parts = {}
    for t in unfused(after_batch):   # fastai's own transforms, inside the one-pass resampling
        if isinstance(t, AffineCoordTfm):
            for f in t.aff_fs or []: parts[f.func.__name__] = dict(f.keywords)
            for f in t.coord_fs or []: parts[type(f).__name__] = {'magnitude': float(f.magnitude), 'p': f.p}
        if isinstance(t, LightingTfm):
            for f in t.fs: parts[type(f).__name__] = {'max_lighting': float(f.max_lighting), 'p': f.p}
        if isinstance(t, RandomResizedCropGPU): parts['crop'] = {'size': t.size, 'min_scale': t.min_scale, 'ratio': t.ratio}
    return parts

def _assert_recipe_transforms(dls, size=224, item_size=460):
    resize = [t for t in dls.after_item if isinstance(t, Resize)]
    assert len(resize) == 1 and resize[0].size == (item_size, item_size) and resize[0].method == 'crop'
    parts = _aug_parts(dls.after_batch)
    assert parts['flip_mat']['p'] == 0.5                                   # do_flip=True, horizontal only
    assert 'dihedral_mat' not in parts
    assert float(parts['rotate_mat']['max_deg']) == 10 and parts['rotate_mat']['p'] == 0.75
    assert (parts['zoom_mat']['min_zoom'], parts['zoom_mat']['max_zoom']) == (1.0, 1.1)
    assert parts['_WarpCoord'] == {'magnitude': pytest.approx(0.2), 'p': 0.75}
    assert parts['_BrightnessLogit'] == parts['_ContrastLogit'] == {'max_lighting': pytest.approx(0.2), 'p': 0.75}
    assert parts['crop'] == {'size': (size, size), 'min_scale': 0.75, 'ratio': (1, 1)}
    fused = [t for t in dls.after_batch if isinstance(t, AffineCropGPU)]   # and the warp and crop resample once
    assert len(fused) == 1 and not [t for t in dls.after_batch if isinstance(t, (AffineCoordTfm, RandomResizedCropGPU))]

def test_transforms_are_resize_460_and_default_aug_transforms_224(folder):
    dls = pets_dataloaders(folder, bs=8, num_workers=0, cache=False)
    _assert_recipe_transforms(dls)
    assert not [t for t in dls.after_batch if isinstance(t, Normalize)]      # the learner adds the body's statistics
    item_tfms, batch_tfms = pets_transforms()   # 13_data checks the Resize; here the batch transforms are the loaders'
    assert _aug_parts(batch_tfms) == _aug_parts([t for t in dls.after_batch if type(t).__name__ != 'IntToFloatTensor'])

# --- training ------------------------------------------------------------------------------------

@pytest.fixture
def small_dls(folder):
    return pets_dataloaders(folder, bs=8, item_size=48, size=32, num_workers=0, cache=False)

def test_train_two_stage_defaults(small_dls, spies):
    learn = pets_learner(small_dls, 'resnet18', pretrained=False)
    run = train_two_stage(learn, show=False)
    _assert_recipe_stages(spies)
    assert run['lr'] == pytest.approx(VALLEY) and run['lr_find']['valley'] == pytest.approx(VALLEY)
    assert [s['epochs'] for s in run['stages']] == [3, 10] and run['stages'][1]['lr'] == [1e-5, 1e-3]

def test_train_finetune_with_the_default_spec(small_dls, spies):
    learn, run = train_finetune(small_dls, TrainSpec('resnet18', pretrained=False, show=False))
    _assert_recipe_stages(spies)
    assert spies['fit'][0]['learn'] is learn

def test_pretrained_stage1_freezes_batch_norm_too(small_dls, spies):
    "A pretrained body (flagged on random weights): stage 1 runs with fastai's BnFreeze, stage 2 without."
    learn = pets_learner(small_dls, 'resnet18', pretrained=False)
    learn.pretrained = True
    train_two_stage(learn, show=False)
    s1, s2 = spies['fit']
    assert 'BnFreeze' in s1['cbs'] and 'BnFreeze' not in s2['cbs']
    assert not any(s1['convs_trainable'])
    assert s2['peak_lrs'] == pytest.approx(STAGE2, rel=1e-6)

def test_the_compile_option_reaches_every_fit_and_the_record(folder, tmp_path, spies, monkeypatch):
    "`--compile` (train_pets) compiles the model in place for each fit through `FastPath`; off by default. Inductor itself is run in 02c."
    compiles = []
    monkeypatch.setattr(nn.Module, 'compile', lambda self, *a, **kw: compiles.append((type(self).__name__, kw)))   # the wiring, not the compiler
    assert _defaults(train_pets)['compile'] is False and TrainSpec().compile is False
    m = train_pets(folder, tmp_path/'off', arch='resnet18', mode='finetune', pretrained=False, size=32, item_size=48, bs=16,
                   freeze_epochs=1, epochs=1, num_workers=0)
    assert compiles == [] and m['policy']['compile'] is False and m['settings']['compile'] is False
    m = train_pets(folder, tmp_path/'on', arch='resnet18', mode='finetune', pretrained=False, size=32, item_size=48, bs=16,
                   freeze_epochs=1, epochs=1, num_workers=0, compile=True)
    assert compiles == [('Sequential', {'dynamic': False})] * 2   # stage 1 and stage 2 (lr_find is stubbed here)
    assert m['policy']['compile'] is True and m['settings']['compile'] is True

def test_train_pets_runs_the_whole_recipe(folder, tmp_path, spies, monkeypatch):
    """`pet_breeds_train`'s function with only the architecture made small: the data it builds (split, Resize(460),
    aug_transforms at the arch's 224) and the two stages it fits."""
    seen = {}
    real = cli.pets_dataloaders
    def dataloaders(*a, **kw):
        seen.update(kw)
        seen['dls'] = real(*a, **kw)
        return seen['dls']
    monkeypatch.setattr(cli, 'pets_dataloaders', dataloaders)
    # yes: the recipe's 13 epochs at 224 px exceed the CPU's hours limit; the spies run no batch
    m = train_pets(folder, tmp_path/'run', arch='resnet18', mode='finetune', pretrained=False, bs=16, num_workers=0, yes=True)
    assert {k: seen[k] for k in ('seed', 'valid_pct', 'item_size', 'size', 'min_scale', 'label')} == \
        {'seed': 42, 'valid_pct': 0.2, 'item_size': 460, 'size': 224, 'min_scale': 0.75, 'label': 'breed'}
    dls = seen['dls']
    _assert_recipe_transforms(dls)
    files = sorted(scan_images(folder).images)
    assert set(dls.valid_ds.items) == _split(files, valid_pct=0.2, seed=42)
    _assert_recipe_stages(spies)
    assert spies['fit'][0]['learn'].dls is dls
    s = m['settings']
    assert (s['seed'], s['valid_pct'], s['freeze_epochs'], s['epochs'], s['lr_max'], s['item_size'], s['size'], s['min_scale']) \
        == (42, 0.2, 3, 10, [1e-5, 1e-3], 460, 224, 0.75)
    assert m['lr'] == pytest.approx(VALLEY)
    meta = json.loads((tmp_path/'run'/'model'/'model.json').read_text())
    assert sorted(meta['valid_files']) == sorted(Path(f).name for f in dls.valid_ds.items)

class PeakDuringFit(Callback):
    "The optimizer's learning rate of every parameter group at every training batch, as the scheduler set it."
    order = ParamScheduler.order + 1
    def __init__(self): self.lrs = []
    def before_batch(self):
        if self.training: self.lrs.append([float(h['lr']) for h in self.opt.hypers])

def test_stage2_rates_in_a_real_run(folder):
    "A real (tiny) stage 2: the rates the optimizer uses rise to 1e-5, 1e-4 and 1e-3 per group, in that ratio throughout."
    dls = pets_dataloaders(folder, bs=2, item_size=40, size=32, num_workers=0, cache=False)
    learn = pets_learner(dls, 'resnet18', pretrained=False)
    spy = PeakDuringFit()
    learn.add_cb(spy)
    with learn.no_bar(), learn.no_logging(): train_two_stage(learn, freeze_epochs=0, epochs=1, lr=1e-2, show=False)
    lrs = np.array(spy.lrs)
    assert len(lrs) == len(dls.train) >= 12
    np.testing.assert_allclose(lrs[:, 0] / lrs[:, 2], 1e-2, rtol=1e-6)
    np.testing.assert_allclose(lrs[:, 1] / lrs[:, 2], 1e-1, rtol=1e-6)
    np.testing.assert_allclose(lrs.max(0), STAGE2, rtol=0.02)   # the peak falls between two batches

# --- the model file's format and version ---------------------------------------------------------

def _model_json(folder:Path, **changes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    meta = {'format': runtime.FORMAT, 'format_version': runtime.FORMAT_VERSION, 'mode': 'finetune', 'arch': 'resnet18',
            'n_out': 2, 'vocab': ['a', 'b'], 'item_size': 48, 'size': 32, 'min_scale': 0.75, **changes}
    (folder/'model.json').write_text(json.dumps(meta))
    return folder

def test_a_current_model_json_is_read(tmp_path):
    d = _model_json(tmp_path/'m')
    assert read_meta(d)['vocab'] == ['a', 'b'] and runtime.read_model_json(d/'model.json')['arch'] == 'resnet18'

@pytest.mark.parametrize('fmt', ['fastai-learner', '', None, 'PET_BREEDS-MODEL'])
def test_a_model_json_of_another_format_is_refused(tmp_path, fmt):
    d = _model_json(tmp_path/'m', format=fmt)
    with pytest.raises(runtime.BadModel) as e: runtime.read_model_json(d)
    assert 'model.json' in str(e.value) and 'not a pet_breeds model' in str(e.value)
    for f in (read_meta, load_model):
        with pytest.raises(PetBreedsError, match='not a pet_breeds model'): f(d)

def test_a_model_json_without_a_format_is_refused(tmp_path):
    d = _model_json(tmp_path/'m')
    meta = json.loads((d/'model.json').read_text()); del meta['format']
    (d/'model.json').write_text(json.dumps(meta))
    with pytest.raises(PetBreedsError, match='not a pet_breeds model'): read_meta(d)

@pytest.mark.parametrize('version', [runtime.FORMAT_VERSION + 1, 99])
def test_a_newer_format_version_is_refused_naming_it(tmp_path, version):
    d = _model_json(tmp_path/'m', format_version=version)
    with pytest.raises(runtime.BadModel) as e: runtime.read_model_json(d)
    msg = str(e.value)
    assert f'version {version}' in msg and 'model.json' in msg and 'upgrade' in msg
    for f in (read_meta, load_model):
        with pytest.raises(PetBreedsError, match=f'version {version}'): f(d)

# --- found missing by tests/mutations.py -----------------------------------------------------------

def test_write_atomic_never_leaves_half_a_file(tmp_path, monkeypatch):
    "A write that fails part way (here: the disk fills at fsync) leaves the previous file whole."
    import errno, os
    from pet_breeds.atomic import write_atomic
    f = tmp_path/'metrics.json'
    write_atomic(f, '{"old": 1}')
    assert f.read_text() == '{"old": 1}'
    def full(fd): raise OSError(errno.ENOSPC, 'No space left on device')
    monkeypatch.setattr(os, 'fsync', full)
    with pytest.raises(OSError, match='No space') as e: write_atomic(f, '{"new": 2, "much": "' + 'x' * 10000 + '"}')
    assert f.read_text() == '{"old": 1}'
    from pet_breeds.atomic import WriteFailed
    assert isinstance(e.value, WriteFailed) and str(e.value).startswith(f'{f}: cannot write it (No space left on device)')
    assert [p.name for p in tmp_path.iterdir()] == ['metrics.json']          # the temporary file is gone
    monkeypatch.undo()
    write_atomic(f, b'{"new": 2}')
    assert f.read_bytes() == b'{"new": 2}'

def test_read_image_bytes_names_an_empty_file(tmp_path):
    "The reader itself refuses an empty file (not only `open_image` after it)."
    from pet_breeds.core import read_image_bytes, BadImage
    (tmp_path/'pug_1.jpg').write_bytes(b'')
    with pytest.raises(BadImage, match=r'pug_1\.jpg: empty file'): read_image_bytes(tmp_path/'pug_1.jpg')

def test_a_full_disk_stops_training_with_one_line_naming_the_file(tmp_path, monkeypatch):
    "A checkpoint that cannot be written ends `pet_breeds_train` with one line naming it, not a traceback or a half checkpoint."
    import errno, pet_breeds.checkpoint as tr
    from pet_breeds.train_cli import main
    from conftest import make_synthetic_pets
    def full(*a, **k): raise OSError(errno.ENOSPC, 'No space left on device')
    monkeypatch.setattr(tr, 'save_file', full)
    data, out = make_synthetic_pets(tmp_path/'images', n=6, size=32), tmp_path/'run'
    with pytest.raises(SystemExit) as e:
        main(data=str(data), out=str(out), mode='finetune', arch='resnet18', pretrained=False, freeze_epochs=1, epochs=1,
             lr=1e-3, size=32, item_size=48, bs=8, num_workers=0)
    assert e.value.code == f"pet_breeds_train: {out/'checkpoints'/'stage1-epoch0'}: cannot write it (No space left on device); " \
                          "any earlier version is unchanged", e.value.code
    assert sorted(p.name for p in (out/'checkpoints').iterdir()) == ['run.json']   # no half checkpoint, no temporary folder
