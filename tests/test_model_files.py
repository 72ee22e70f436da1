"""Model files are data; pickles load only by explicit opt-in (issue 10, item 1).

A fastai export (`export.pkl`) is refused without `trust_pickle` / `--trust_pickle`, and nothing in it runs;
with the flag it is unpickled after a warning and predicts like a `PetModel`. Exported folders of every
architecture family and mode load with every unpickling entry point disabled. A truncated, tampered or
mismatched folder fails with a `PetBreedsError` that names the file and the problem."""
import json, pickle, re, shutil
from pathlib import Path
import numpy as np, pytest, torch
from PIL import Image
from safetensors.torch import save_file, load_file
from conftest import make_synthetic_pets, run_cli, random_export_meta
from pet_breeds import runtime
from pet_breeds.core import PetBreedsError, open_image
from pet_breeds.archs import get_arch, family_examples
from pet_breeds.learner import build_model
from pet_breeds.inference import PetModel, load_model, UnpicklingWarning, fastai_export

VOCAB = ['Bengal', 'Sphynx', 'beagle', 'pug']

# ---- helpers -------------------------------------------------------------------------------------------------

class Payload:
    "Unpickling this creates `marker`: proof that a pickle's code ran."
    def __init__(self, marker): self.marker = marker
    def __reduce__(self): return (Path.touch, (self.marker,))

@pytest.fixture
def evil(tmp_path):
    "A folder holding only `export.pkl`, a pickle whose unpickling creates `marker`; returns (folder, marker)."
    folder, marker = tmp_path/'evil', tmp_path/'ran'
    folder.mkdir()
    (folder/'export.pkl').write_bytes(pickle.dumps(Payload(marker)))
    return folder, marker

@pytest.fixture
def no_unpickling(monkeypatch):
    """Every way this process could unpickle a file raises, and is recorded; the test fails if any was called.
    (Recorded as well as raised, since a loader that catches every exception could hide the raise.)"""
    import importlib, pickle as pk, _pickle, torch.serialization, fastai.learner, pet_breeds.inference as inf
    calls = []
    def blocked(name):
        def f(*a, **k):
            calls.append(name)
            raise AssertionError(f'{name} called: something unpickled')
        return f
    targets = [(pk, 'load'), (pk, 'loads'), (pk, 'Unpickler'), (pk, '_load'), (pk, '_loads'), (pk, '_Unpickler'),
               (_pickle, 'load'), (_pickle, 'loads'), (_pickle, 'Unpickler'),
               (torch, 'load'), (torch.serialization, 'load'), (torch.serialization, '_load'), (torch.serialization, '_legacy_load'),
               (fastai.learner, 'load_learner'), (inf, 'load_learner'), (np, 'load')]
    try:
        dill = importlib.import_module('dill')
        targets += [(dill, 'load'), (dill, 'loads'), (dill, 'Unpickler')]
    except ImportError: pass
    for mod, name in targets:
        if hasattr(mod, name): monkeypatch.setattr(mod, name, blocked(f'{mod.__name__}.{name}'))
    yield calls
    assert calls == [], calls

def write_folder(dest:Path, arch:str='resnet18', mode:str='finetune', size:int=32, item_size:int=48, seed:int=0, **extra) -> Path:
    "An exported model folder in `export_model`'s format, with random weights (conftest's `random_export_meta`, as test_onnx.random_model)."
    torch.manual_seed(seed)
    meta = random_export_meta(arch, VOCAB, mode, size, item_size, **extra)
    model = build_model(meta)
    dest.mkdir(parents=True)
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, dest/'model.safetensors', metadata={'format': runtime.FORMAT})
    (dest/'model.json').write_text(json.dumps(meta, indent=1))
    return dest

def photo(size:int=40, seed:int=0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8))

# ---- pickles: refused without the flag -----------------------------------------------------------------------

@pytest.mark.parametrize('where', ['folder', 'file'])
def test_load_model_refuses_a_pickle_and_runs_nothing(evil, no_unpickling, where):
    folder, marker = evil
    path = folder if where == 'folder' else folder/'export.pkl'
    with pytest.raises(PetBreedsError) as e: load_model(path)
    msg = str(e.value)
    assert msg.startswith(f"{folder/'export.pkl'}: refused"), msg
    assert 'unpickling can run any code' in msg and 'trust_pickle=True' in msg and '--trust_pickle' in msg
    with pytest.raises(PetBreedsError, match='refused'): load_model(path, onnx=True)
    assert not marker.exists() and no_unpickling == []

def test_every_command_refuses_a_pickle_and_runs_nothing(evil, no_unpickling, tmp_path, capsys):
    "pet_breeds_predict, _sort, _interpret and _app, called in this process with every unpickler disabled."
    from pet_breeds.deploy import predict_main
    from pet_breeds.sort_cli import sort_main
    from pet_breeds.interpret import interpret_main
    from pet_breeds.widget import app_main
    folder, marker = evil
    fn = folder/'export.pkl'
    photo().save(tmp_path/'cat.jpg')
    (tmp_path/'in').mkdir()
    calls = [('pet_breeds_predict', lambda: predict_main([str(folder), str(tmp_path/'cat.jpg')])),
             ('pet_breeds_predict', lambda: predict_main([str(fn), str(tmp_path/'cat.jpg')])),
             ('pet_breeds_sort', lambda: sort_main(model=str(folder), incoming=str(tmp_path/'in'), out=str(tmp_path/'out'))),
             ('pet_breeds_interpret', lambda: interpret_main(model=str(folder), test=str(tmp_path), out=str(tmp_path/'rep'))),
             ('pet_breeds_app', lambda: app_main(model=str(folder)))]
    for prog, call in calls:
        with pytest.raises(SystemExit) as e: call()
        assert isinstance(e.value.code, str) and e.value.code.startswith(f'{prog}: {fn}: refused'), (prog, e.value.code)
        assert '--trust_pickle' in e.value.code
    assert not marker.exists() and not (tmp_path/'rep').exists()

def test_the_sorter_in_the_library_refuses_a_pickle(evil, tmp_path):
    from pet_breeds.sort import Sorter
    folder, marker = evil
    with pytest.raises(PetBreedsError, match=re.escape(f'{folder/"export.pkl"}: refused')): Sorter(folder, tmp_path/'out')
    assert not marker.exists()

def test_predict_command_refuses_a_pickle(evil, tmp_path):
    folder, marker = evil
    photo().save(tmp_path/'cat.jpg')
    r = run_cli('pet_breeds_predict', folder, tmp_path/'cat.jpg')
    assert r.returncode != 0 and 'Traceback' not in r.stderr, r.stderr
    assert f"{folder/'export.pkl'}: refused" in r.stderr and '--trust_pickle' in r.stderr and r.stdout == ''
    assert not marker.exists()

def test_a_folder_with_model_json_never_reads_its_export_pkl(tmp_path, no_unpickling):
    folder = write_folder(tmp_path/'m')
    (folder/'export.pkl').write_bytes(pickle.dumps(Payload(tmp_path/'ran')))
    assert fastai_export(folder) is None
    assert load_model(folder).vocab == VOCAB and not (tmp_path/'ran').exists()

def _px(arch): return max(32, -(-get_arch(arch).family.min_size // 16) * 16)   # the family's smallest, rounded up

# (arch, mode, size, item_size, extra): every family of the registry, then the cut, features and probe modes
FAMILIES = [(a, 'finetune', _px(a), _px(a) * 3 // 2, {}) for a in family_examples()] + [
    ('vgg16', 'cut', 32, 48, {'cut_layer': 'block1_pool'}),
    ('resnet18', 'features', 32, 48, {}),
    ('efficientnet_lite0', 'probe', 32, 48, {'backbones': ['efficientnet_lite0'], 'normalize': None}),
]

@pytest.mark.parametrize('arch,mode,size,item_size,extra', FAMILIES, ids=[f'{a}-{m}' for a, m, *_ in FAMILIES])
def test_every_family_loads_with_unpickling_disabled(tmp_path, no_unpickling, arch, mode, size, item_size, extra):
    folder = write_folder(tmp_path/'m', arch, mode, size, item_size, **extra)
    expected = build_model(json.loads((folder/'model.json').read_text()))
    expected.load_state_dict(load_file(folder/'model.safetensors'))
    pm = load_model(folder, device='cpu')
    assert isinstance(pm, PetModel) and pm.vocab == VOCAB and pm.meta['mode'] == mode
    for k, v in expected.state_dict().items(): assert torch.equal(pm.model.state_dict()[k], v), k
    top = pm.predict(photo(item_size), k=2)
    assert len(top) == 2 and {l for l, _ in top} <= set(VOCAB)
    assert no_unpickling == []

# ---- pickles: loaded with the flag -------------------------------------------------------------------------

def test_the_flag_really_unpickles_after_a_warning(evil):
    folder, marker = evil
    fn = folder/'export.pkl'
    with pytest.raises(PetBreedsError, match='runs with PyTorch only'): load_model(folder, onnx=True, trust_pickle=True)
    assert not marker.exists()
    with pytest.warns(UnpicklingWarning, match=re.escape(str(fn))):
        with pytest.raises(PetBreedsError, match=re.escape(str(fn))): load_model(folder, trust_pickle=True)   # it holds no Learner
    assert marker.exists()

def test_a_pickle_of_something_else_than_a_learner_is_refused(evil, monkeypatch):
    "What load_learner returns is checked (here fastai's loader, stubbed, hands back a dict)."
    import fastai.learner
    folder, _ = evil
    monkeypatch.setattr(fastai.learner, 'load_learner', lambda fn, cpu=True: {'not': 'a learner'})
    with pytest.warns(UnpicklingWarning), pytest.raises(PetBreedsError) as e: load_model(folder, trust_pickle=True)
    assert str(e.value) == f"{folder/'export.pkl'}: not a fastai export (it holds a dict, not a Learner)"

@pytest.fixture(scope='module')
def fastai_learner(tmp_path_factory):
    "A tiny resnet18 learner on synthetic pets, exported the fastai way (`learn.export()`), with the images it was built on."
    from pet_breeds.data import pets_dataloaders
    from pet_breeds.learner import pets_learner
    root = tmp_path_factory.mktemp('fastai')
    images = make_synthetic_pets(root/'images', n=6, size=40)
    dls = pets_dataloaders(images, bs=8, item_size=48, size=32, num_workers=0, cache=False)
    learn = pets_learner(dls, 'resnet18', pretrained=False)
    (root/'export').mkdir()
    learn.export(root/'export'/'export.pkl')
    return root/'export', learn, dls, sorted(images.iterdir())[::5]

def test_a_genuine_fastai_export_loads_with_the_flag_and_predicts_like_the_learner(fastai_learner):
    folder, learn, dls, files = fastai_learner
    with pytest.raises(PetBreedsError, match='refused'): load_model(folder)
    with pytest.warns(UnpicklingWarning, match=re.escape(str(folder/'export.pkl'))):
        pm = load_model(folder, device='cpu', trust_pickle=True, precision='fp32')   # compared with the fp32 learner
    assert isinstance(pm, PetModel) and pm.vocab == list(dls.vocab) == VOCAB
    assert {k: pm.meta[k] for k in ('item_size', 'size', 'min_scale', 'arch', 'label')} == \
           {'item_size': 48, 'size': 32, 'min_scale': 0.75, 'arch': 'resnet18', 'label': 'breed'}
    expected, _ = learn.get_preds(dl=dls.test_dl(files))
    got = pm.probs([open_image(f) for f in files], tta=False)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    top = pm.predict(files[0], k=2, tta=False)
    assert [l for l, _ in top] == [l for l, _ in pm.topk(got[0], k=2)] and len(top) == 2
    np.testing.assert_allclose([p for _, p in top], [p for _, p in pm.topk(got[0], k=2)], atol=1e-5)
    rows = pm.predict_many([*files[:2], b'not an image'], k=1, tta=False)
    assert [r['top'][0][0] for r in rows[:2]] == [pm.vocab[int(i)] for i in expected[:2].argmax(1)] and 'error' in rows[2]

def test_an_export_with_fastais_two_resampling_transforms_loads_and_predicts_like_its_learner(tmp_path):
    "Exports made before `fuse_affine_crop` hold fastai's own `Flip` and `RandomResizedCropGPU`: accepted, and the one pass predicts as they did."
    from fastai.vision.all import IntToFloatTensor, aug_transforms
    from pet_breeds.data import pets_dataloaders
    from pet_breeds.learner import pets_learner
    images = make_synthetic_pets(tmp_path/'images', n=6, size=40)
    dls = pets_dataloaders(images, bs=8, item_size=48, size=32, num_workers=0, cache=False)
    dls.loaders = [dl.new(after_batch=[IntToFloatTensor(), *aug_transforms(size=32, min_scale=0.75)]) for dl in dls.loaders]
    assert sorted(type(t).__name__ for t in dls.after_batch) == ['Brightness', 'Flip', 'IntToFloatTensor', 'RandomResizedCropGPU']
    learn = pets_learner(dls, 'resnet18', pretrained=False)
    learn.export(tmp_path/'export.pkl')
    with pytest.warns(UnpicklingWarning): pm = load_model(tmp_path/'export.pkl', device='cpu', trust_pickle=True, precision='fp32')
    assert [type(t).__name__ for t in pm.after_batch] == ['IntToFloatTensor', 'AffineCropGPU', 'Brightness']
    files = sorted(images.iterdir())[::5]
    expected, _ = learn.get_preds(dl=dls.test_dl(files))
    torch.testing.assert_close(pm.probs([open_image(f) for f in files], tta=False), expected, atol=1e-5, rtol=0)

def test_predict_command_loads_a_fastai_export_with_the_flag(fastai_learner):
    folder, learn, dls, files = fastai_learner
    r = run_cli('pet_breeds_predict', folder, files[0], '--trust_pickle', '--json', '--k', '2', '--no_tta', '--precision', 'fp32', proc=True)   # the warning as a user sees it
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'UnpicklingWarning' in r.stderr and str(folder/'export.pkl') in r.stderr
    row = json.loads(r.stdout.strip().splitlines()[-1])
    expected, _ = learn.get_preds(dl=dls.test_dl(files[:1]))
    assert row['file'] == str(files[0]) and row['top'][0][0] == VOCAB[int(expected[0].argmax())]

def test_the_other_commands_load_a_fastai_export_with_the_flag(fastai_learner, tmp_path, capsys):
    "pet_breeds_sort, pet_breeds_interpret (on --test: a fastai export records no validation split) and the app's widget."
    from pet_breeds.sort_cli import sort_main
    from pet_breeds.interpret import interpret_main
    from pet_breeds.widget import PredictWidget
    folder, learn, dls, files = fastai_learner
    (tmp_path/'in').mkdir()
    for f in files[:3]: shutil.copy(f, tmp_path/'in'/f.name)
    with pytest.warns(UnpicklingWarning):
        sort_main(model=str(folder), incoming=str(tmp_path/'in'), out=str(tmp_path/'out'), copy=True, min_prob=0.0, trust_pickle=True)
    assert sorted(p.name for p in (tmp_path/'out').rglob('*.jpg')) == sorted(f.name for f in files[:3])
    from pet_breeds.sort import Sorter
    with pytest.warns(UnpicklingWarning): assert Sorter(folder, tmp_path/'out2', trust_pickle=True).model.vocab == VOCAB
    with pytest.warns(UnpicklingWarning):
        with pytest.raises(SystemExit, match='records no validation images'): interpret_main(model=str(folder), out=str(tmp_path/'r0'), trust_pickle=True)
    with pytest.warns(UnpicklingWarning):
        interpret_main(model=str(folder), test=str(files[0].parent), out=str(tmp_path/'rep'), k=4, trust_pickle=True)
    assert (tmp_path/'rep'/'per_class.csv').exists() and '24 images' in capsys.readouterr().out
    with pytest.warns(UnpicklingWarning): assert PredictWidget(folder, trust_pickle=True).model.vocab == VOCAB

@pytest.mark.parametrize('pipeline', ['squish', 'no crop', 'one more'])
def test_a_learner_of_another_pipeline_is_refused_naming_the_file(tmp_path, pipeline):
    "PetModel rebuilds only this package's validation pipeline; a learner with another is refused, not mispredicted."
    from fastai.vision.all import ImageDataLoaders, Resize, Saturation, aug_transforms, vision_learner, resnet18
    images = make_synthetic_pets(tmp_path/'images', n=4, size=40)
    item = Resize(48, method='squish' if pipeline == 'squish' else 'crop')
    batch = [] if pipeline == 'no crop' else [*aug_transforms(size=32, min_scale=0.75), *([Saturation()] if pipeline == 'one more' else [])]
    dls = ImageDataLoaders.from_name_re(images, sorted(images.iterdir()), r'(.+)_\d+\.jpg$', item_tfms=item, batch_tfms=batch,
                                        bs=4, num_workers=0)
    learn = vision_learner(dls, resnet18, pretrained=False)
    learn.export(tmp_path/'export.pkl')
    with pytest.warns(UnpicklingWarning), pytest.raises(PetBreedsError) as e: load_model(tmp_path/'export.pkl', trust_pickle=True)
    assert str(e.value).startswith(f"{tmp_path/'export.pkl'}: its input pipeline") and "not this package's recipe" in str(e.value)

# ---- damaged, tampered and mismatched folders ----------------------------------------------------------------

@pytest.fixture(scope='module')
def good(tmp_path_factory):
    return write_folder(tmp_path_factory.mktemp('good')/'model')

@pytest.fixture
def copy(good, tmp_path):
    "A fresh copy of a good model folder, to damage."
    return Path(shutil.copytree(good, tmp_path/'model'))

def edit_json(folder:Path, **changes):
    meta = json.loads((folder/'model.json').read_text())
    meta.update(changes)
    (folder/'model.json').write_text(json.dumps(meta))

def edit_weights(folder:Path, f):
    state = load_file(folder/'model.safetensors')
    f(state)
    save_file(state, folder/'model.safetensors')

def refused(folder, *parts):
    "Loading `folder` raises a `PetBreedsError` whose message contains each of `parts`; returns the message."
    with pytest.raises(PetBreedsError) as e: load_model(folder)
    msg = str(e.value)
    for p in parts: assert p in msg, msg
    return msg

def test_a_good_folder_loads(good):
    assert load_model(good).vocab == VOCAB

def test_model_json_that_is_not_json(copy):
    (copy/'model.json').write_text('{"format": "pet_breeds-model", "vocab": [')
    refused(copy, f"{copy/'model.json'}: not valid JSON")

def test_model_json_of_another_format(copy):
    edit_json(copy, format='fastai-learner')
    refused(copy, f"{copy/'model.json'}: not a pet_breeds model file")

@pytest.mark.parametrize('version,says', [(runtime.FORMAT_VERSION + 1, 'is newer than this pet_breeds reads'),
                                          (0, 'unknown format version 0'), ('1', "unknown format version '1'"),
                                          (1.0, 'unknown format version 1.0'), (True, 'unknown format version True'),
                                          (None, 'no format_version')])
def test_model_json_of_an_unknown_version(copy, version, says):
    meta = json.loads((copy/'model.json').read_text())
    if version is None: del meta['format_version']
    else: meta['format_version'] = version
    (copy/'model.json').write_text(json.dumps(meta))
    refused(copy, f"{copy/'model.json'}: ", says)
    with pytest.raises(runtime.BadModel, match=re.escape(says)): runtime.read_model_json(copy)   # the ONNX runtime's reader too

@pytest.mark.parametrize('key,value,says', [('vocab', None, "no 'vocab' entry"), ('size', '32', "'size' is '32', not a whole number from 1 to"),
                                            ('item_size', 0, "'item_size' is 0"), ('vocab', [], "'vocab' is []"),
                                            ('vocab', ['a', 'a', 'b', 'c'], "'vocab' repeats a label"), ('min_scale', 2, "'min_scale' is 2")])
def test_model_json_with_a_bad_entry(copy, key, value, says):
    meta = json.loads((copy/'model.json').read_text())
    if value is None: del meta[key]
    else: meta[key] = value
    (copy/'model.json').write_text(json.dumps(meta))
    refused(copy, f"{copy/'model.json'}: ", says)

@pytest.mark.parametrize('change,says', [
    ({'head': {'lin_ftrs': [200000, 200000]}}, "'head.lin_ftrs' is [200000, 200000]"), ({'size': 100000}, "'size' is 100000"),
    ({'item_size': 10**6}, "'item_size' is 1000000"), ({'mode': ['x']}, "'mode' is ['x']"), ({'head': [1, 2]}, "'head' is [1, 2]"),
    ({'normalize': 'str'}, "'normalize' is 'str'"), ({'normalize': {'mean': [0, 0, 0], 'std': [0, 0, 0]}}, "'normalize.std' is [0, 0, 0]"),
    ({'preprocess': {'crop_resize': {'size': 10**6}, 'resize': {'size': 32}, 'area_resize': None, 'scale': 1}}, "'preprocess.crop_resize.size'")])
def test_model_json_out_of_range_is_refused_before_anything_is_built(copy, change, says, monkeypatch):
    """Issue 21: model.json asked for 120-160 GB (a 200000-wide head, a 10^6-pixel item) or divided by a zero std before
    its weights were checked. Each entry's type and range is checked first, by both loaders: no network is built."""
    import pet_breeds.inference as inference
    monkeypatch.setattr(inference, 'build_model', lambda meta: pytest.fail('built a network from a refused model.json'))
    edit_json(copy, **change)
    refused(copy, f"{copy/'model.json'}: ", says)
    with pytest.raises(runtime.BadModel, match=re.escape(says)): runtime.read_model_json(copy)

def test_weights_holding_nan_are_refused_at_load(copy):
    """Issue 21: a run that diverged exports NaN weights, whose predictions printed "nan%" with exit 0."""
    edit_weights(copy, lambda s: s['0.0.weight'].view(-1)[:5].fill_(float('nan')))
    refused(copy, f"{copy/'model.safetensors'}: 1 tensors hold NaN or infinite numbers (0.0.weight)")
    def inf_in_the_head(state):
        state['0.0.weight'].zero_()
        state[last].view(-1)[0] = float('inf')
    last = [k for k in load_file(copy/'model.safetensors') if k.endswith('weight')][-1]
    edit_weights(copy, inf_in_the_head)
    refused(copy, f"1 tensors hold NaN or infinite numbers ({last})")

def test_model_json_whose_n_out_is_not_its_vocabs_length(copy):
    edit_json(copy, n_out=5)
    refused(copy, f"{copy/'model.json'}: wrong class count: 'n_out' is 5 but 'vocab' has 4 labels")

def test_model_json_of_an_unknown_architecture(copy):
    edit_json(copy, arch='resnet1000')
    refused(copy, f"{copy/'model.json'}: unknown architecture 'resnet1000'")

def test_model_json_lacking_what_its_mode_needs(copy):
    edit_json(copy, mode='cut')   # no cut_layer
    refused(copy, f"{copy/'model.json'}: no 'cut_layer' entry", "'cut' mode")

def test_weights_of_another_class_count(copy):
    "model.json and its vocab agree (5 labels), but model.safetensors holds a head for 4 classes."
    edit_json(copy, vocab=VOCAB + ['Persian'], n_out=5)
    refused(copy, f"{copy/'model.safetensors'}: wrong class count", 'has 4 outputs', 'vocab has 5 labels')

def test_weights_missing_a_tensor(copy):
    edit_weights(copy, lambda s: s.pop('0.0.weight'))
    refused(copy, f"{copy/'model.safetensors'}: the weights do not fit", '1 tensors missing (0.0.weight)')

def test_weights_with_an_unexpected_tensor(copy):
    edit_weights(copy, lambda s: s.update({'extra.weight': torch.zeros(3)}))
    refused(copy, f"{copy/'model.safetensors'}: the weights do not fit", '1 unexpected (extra.weight)')

def test_weights_of_another_shape(copy):
    edit_weights(copy, lambda s: s.update({'0.0.weight': torch.zeros(64, 3, 3, 3)}))
    refused(copy, f"{copy/'model.safetensors'}: the weights do not fit", '0.0.weight is (64, 3, 3, 3), the network\'s (64, 3, 7, 7)')

def test_weights_of_another_architecture(copy):
    edit_json(copy, arch='resnet34')
    msg = refused(copy, f"{copy/'model.safetensors'}: the weights do not fit", 'tensors missing (')
    assert re.search(r'tensors missing \(.*\d+ more\)', msg), msg

def test_load_state_dict_errors_name_the_file(copy, monkeypatch):
    "Whatever load_state_dict still refuses (after the checks above) comes out as a PetBreedsError naming the file."
    def fail(self, *a, **k): raise RuntimeError('Error(s) in loading state_dict for Sequential: something')
    monkeypatch.setattr(torch.nn.Module, 'load_state_dict', fail)
    refused(copy, f"{copy/'model.safetensors'}: the weights do not fit", 'something')

def test_weights_missing(copy):
    (copy/'model.safetensors').unlink()
    refused(copy, f"{copy/'model.safetensors'}: missing")

@pytest.mark.parametrize('keep', [0, 7, 100, 0.5, -1])
def test_weights_truncated(copy, keep):
    w = copy/'model.safetensors'
    data = w.read_bytes()
    w.write_bytes(data[:int(len(data) * keep) if isinstance(keep, float) else keep])
    refused(copy, f"{w}: unreadable: truncated or damaged", 'SafetensorError')

def test_weights_that_are_not_safetensors(copy):
    torch.save({'x': torch.zeros(2)}, copy/'model.safetensors')   # a pickle under the name: never unpickled
    refused(copy, f"{copy/'model.safetensors'}: unreadable")

@pytest.mark.parametrize('label', ['..', 'a/b', '_unsure', 'x\u202etxt.jpg', 'x' * 300])
def test_a_label_that_cannot_name_a_folder_is_refused_at_load(copy, label):
    """Issue 21: a label becomes OUT/<label>/ in the sorter, so `..`, separators, the sorter's own names, bidi characters
    and over-long names are refused when the model loads, by PyTorch's loader and the torch-free runtime alike."""
    edit_json(copy, vocab=[label, *VOCAB[1:]])
    refused(copy, str(copy/'model.json'), repr(label), 'cannot name a folder')
    with pytest.raises(PetBreedsError, match='cannot name a folder'): runtime.read_model_json(copy)

def test_the_sorters_log_name_is_not_a_label(copy):
    from pet_breeds.files import CSV_NAME
    edit_json(copy, vocab=[CSV_NAME, *VOCAB[1:]])
    refused(copy, 'cannot name a folder')

def test_nan_probabilities_are_no_prediction(tmp_path):
    """Issue 21: a model whose weights are damaged in a way the loader cannot see (a tampered model.onnx) computes NaN:
    predicting stops with the file named, not "nan%" and exit 0."""
    from PIL import Image
    nan = lambda imgs, bs: np.full((len(imgs), 2), np.nan, np.float32)
    top = lambda p, k: [('a', float(p[0]))]
    with pytest.raises(runtime.BadModel, match='cat.jpg: the model computed NaN probabilities'):
        runtime.topk_in_batches([Image.new('RGB', (8, 8))], nan, top, names=['cat.jpg'])
    ok = lambda imgs, bs: np.full((len(imgs), 2), 0.5, np.float32)
    assert runtime.topk_in_batches([Image.new('RGB', (8, 8))], ok, top, names=['cat.jpg'])[0]['top'] == [('a', 0.5)]
