"""Test-time augmentation: each image's probabilities averaged with its mirror image's, batched, the same in PyTorch and
onnxruntime, with `runtime.TTA_DEFAULT` read when a prediction runs, and `tta` passed through by pet_breeds_predict,
the sorter (pet_breeds_sort) and the widget (pet_breeds_app)."""
import io, json, shutil
from contextlib import redirect_stdout
from pathlib import Path
import numpy as np, pytest, torch
from torch import nn
from PIL import Image, ImageOps
from pet_breeds import runtime
from pet_breeds.core import open_image
from pet_breeds.deploy import export_onnx, predict_main
from pet_breeds.inference import PetModel, load_model
from pet_breeds.runtime import OnnxModel, preprocess_spec, read_rgb

VOCAB = ['Abyssinian', 'Bengal', 'american_bulldog']
PHOTOS = ['Abyssinian_1.jpg', 'Abyssinian_34.jpg', 'Bengal_10.jpg', 'Bengal_57.jpg', 'american_bulldog_22.jpg']
ITEM, SIZE = 48, 32

class LeftRight(nn.Module):
    "Scores the classes from each channel's mean over the left half and over the right half: a mirror image changes its answer."
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, len(VOCAB))
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[3., 0, 0, -3, 0, 0], [0, 3, 0, 0, -3, 0], [0, 0, 3, 0, 0, -3]]))
            self.fc.bias.zero_()
    def forward(self, x):
        w = x.shape[-1] // 2
        return self.fc(torch.cat([x[..., :w].mean((2, 3)), x[..., w:].mean((2, 3))], 1))

def meta(**kw) -> dict:
    m = {'format': runtime.FORMAT, 'format_version': runtime.FORMAT_VERSION, 'mode': 'finetune', 'arch': 'left_right',
         'vocab': VOCAB, 'n_out': len(VOCAB), 'item_size': ITEM, 'size': SIZE, 'min_scale': 0.75,
         'normalize': {'mean': [0.485, 0.456, 0.406], 'std': [0.229, 0.224, 0.225]}, **kw}
    m['preprocess'] = preprocess_spec(m)
    return m

@pytest.fixture(scope='module')
def lr_models(tmp_path_factory):
    "The left/right model as a `PetModel` and, exported to a folder holding only model.json and model.onnx, as an `OnnxModel`."
    folder = tmp_path_factory.mktemp('lr')/'model'; folder.mkdir()
    pm = PetModel(LeftRight(), meta(), device='cpu', precision='fp32')   # compared with its ONNX export, which runs fp32
    export_onnx(folder, loaded=pm)
    assert sorted(p.name for p in folder.iterdir()) == ['model.json', 'model.onnx']
    return pm, OnnxModel.load(folder), folder

@pytest.fixture(scope='module')
def resnet(tmp_path_factory, sample_dir):
    "A random ResNet18 (see test_onnx.random_model) with model.safetensors and model.onnx: a real network, either runtime."
    from test_onnx import random_model
    folder, pm = random_model(tmp_path_factory.mktemp('rn')/'model', 'resnet18', [sample_dir/n for n in PHOTOS], size=SIZE, item_size=ITEM)
    export_onnx(folder, loaded=pm)
    return pm, OnnxModel.load(folder), folder

def squares(n=5, seed=0) -> list:
    "Random RGB squares of `item_size`: the validation pipeline crops and resizes nothing, so mirroring them is mirroring the batch."
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (ITEM, ITEM, 3), dtype=np.uint8)) for _ in range(n)]

def opener(model): return open_image if isinstance(model, PetModel) else read_rgb
def probs(model, images, **kw) -> np.ndarray:
    "`model.probs` of PIL `images`, opened as that runtime opens them, as a numpy array."
    p = model.probs([opener(model)(im) for im in images], **kw)
    return p.numpy() if isinstance(p, torch.Tensor) else p

@pytest.fixture
def default(monkeypatch):
    "Set `runtime.TTA_DEFAULT` for one test."
    return lambda v: monkeypatch.setattr(runtime, 'TTA_DEFAULT', v)

# ---- the library ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize('kind', ['torch', 'onnx'])
def test_tta_is_the_mean_of_the_image_and_its_mirror_image(lr_models, kind):
    model = lr_models[0 if kind == 'torch' else 1]
    ims = squares()
    plain, mirrored = probs(model, ims, tta=False), probs(model, [ImageOps.mirror(im) for im in ims], tta=False)
    with_tta = probs(model, ims, bs=2, tta=True)
    np.testing.assert_allclose(with_tta, (plain + mirrored) / 2, atol=1e-6, rtol=0)
    # the model tells left from right, so TTA changes its answer (and makes it the same for an image and its mirror image)
    assert np.abs(with_tta - plain).max() > 0.05
    np.testing.assert_allclose(probs(model, [ImageOps.mirror(im) for im in ims], tta=True), with_tta, atol=1e-6, rtol=0)
    top = model.predict(opener(model)(ims[0]), k=3, tta=True)
    np.testing.assert_allclose(sorted(p for _, p in top), sorted(with_tta[0]), atol=1e-6)
    many = model.predict_many(ims[:3], k=3, bs=2, tta=True)
    for r, p in zip(many, with_tta): np.testing.assert_allclose([q for _, q in r['top']], sorted(p, reverse=True), atol=1e-6)

@pytest.mark.parametrize('kind', ['torch', 'onnx'])
def test_tta_stays_batched(lr_models, kind):
    "Each batch of n runs as one forward of 2n images (or two of n), not image by image."
    model, sizes = lr_models[0 if kind == 'torch' else 1], []
    if kind == 'torch':
        h = model.model.register_forward_hook(lambda m, i, o: sizes.append(i[0].shape[0]))
        try: probs(model, squares(6), bs=3, tta=True)
        finally: h.remove()
    else:
        class Session:   # onnxruntime's session, counting the images of each run
            def __init__(self, s): self.s = s
            def run(self, names, feed): sizes.append(len(next(iter(feed.values())))); return self.s.run(names, feed)
        session, model.session = model.session, Session(model.session)
        try: probs(model, squares(6), bs=3, tta=True)
        finally: model.session = session
    assert sum(sizes) == 12 and len(sizes) <= 4 and min(sizes) >= 3, sizes   # here: [6, 6]

@pytest.mark.parametrize('kind', ['torch', 'onnx'])
def test_the_default_is_read_when_predicting(lr_models, default, kind):
    model, ims = lr_models[0 if kind == 'torch' else 1], squares(3)
    on, off = probs(model, ims, tta=True), probs(model, ims, tta=False)
    for v, want in [(True, on), (False, off), (True, on)]:
        default(v)
        np.testing.assert_allclose(probs(model, ims), want, atol=1e-6, rtol=0)
        np.testing.assert_allclose(probs(model, ims, tta=None), want, atol=1e-6, rtol=0)

def test_onnx_agrees_with_pytorch_with_tta(lr_models, resnet, sample_dir):
    photos = [Image.open(sample_dir/n) for n in PHOTOS] + squares(3)
    for pm, om, _ in (lr_models, resnet):
        for tta in (True, False):
            np.testing.assert_allclose(probs(om, photos, bs=3, tta=tta), probs(pm, photos, tta=tta), atol=1e-4, rtol=0)
        assert np.abs(probs(pm, photos, tta=True) - probs(pm, photos, tta=False)).max() > 1e-3, pm.meta['arch']

# ---- pet_breeds_predict -----------------------------------------------------------------------------------------

def run_predict(*args) -> list:
    with redirect_stdout(io.StringIO()) as out: predict_main([*map(str, args), '--json', '--k', '3', '--precision', 'fp32'])   # compared with fp32 and ONNX figures
    return [[p for _, p in r['top']] for r in map(json.loads, out.getvalue().splitlines())]

def expected(model, files, tta) -> list:
    return [[p for _, p in r['top']] for r in model.predict_many(files, k=3, tta=tta)]

@pytest.mark.parametrize('kind', ['torch', 'onnx'])
def test_predict_command_passes_tta(lr_models, resnet, sample_dir, default, kind):
    files = [sample_dir/n for n in PHOTOS]
    model, folder = (resnet[0], resnet[2]) if kind == 'torch' else (lr_models[1], lr_models[2])
    if kind == 'torch': assert type(load_model(folder)).__name__ == 'PetModel'
    on, off = expected(model, files, True), expected(model, files, False)
    assert np.abs(np.array(on) - np.array(off)).max() > 1e-3
    np.testing.assert_allclose(run_predict(folder, *files, '--tta'), on, atol=1e-5, rtol=0)
    np.testing.assert_allclose(run_predict(folder, *files, '--no_tta'), off, atol=1e-5, rtol=0)
    for v, want in [(True, on), (False, off)]:
        default(v)
        np.testing.assert_allclose(run_predict(folder, *files), want, atol=1e-5, rtol=0)

def test_predict_command_with_tta_agrees_across_runtimes(resnet, sample_dir):
    files = [sample_dir/n for n in PHOTOS]
    np.testing.assert_allclose(run_predict(resnet[2], *files, '--tta', '--runtime', 'onnx'), run_predict(resnet[2], *files, '--tta'), atol=1e-4, rtol=0)

# ---- the sorter, pet_breeds_sort and the widget -----------------------------------------------------------------

class Spy:
    "A stand-in model that records the `tta` it is given and labels everything Bengal."
    vocab = VOCAB
    def __init__(self): self.seen = []
    def predict_many(self, items, k=3, bs=64, names=None, tta='not given'):
        self.seen.append(tta)
        return [{'file': n, 'top': [('Bengal', 0.9)]} for n in names]

def incoming(tmp_path, sample_dir, name='in') -> Path:
    inc = tmp_path/name; inc.mkdir()
    for n in PHOTOS: shutil.copy(sample_dir/n, inc/n)
    return inc

def test_sorter_passes_tta(tmp_path, sample_dir):
    from pet_breeds.sort import sort_images
    from pet_breeds.watch import watch_folder
    for tta in (True, False, None):
        spy = Spy()
        sort_images(spy, incoming(tmp_path, sample_dir, f'in{tta}'), tmp_path/f'out{tta}', copy=True, bs=2, tta=tta)
        assert spy.seen == [tta] * 3
    spy = Spy()
    watch_folder(spy, incoming(tmp_path, sample_dir, 'inw'), tmp_path/'outw', copy=True, tta=True, settle=0, poll=0.05, idle_exit=0.3, max_seconds=20)
    assert spy.seen and set(spy.seen) == {True}

def test_sorter_records_the_tta_probabilities(lr_models, tmp_path, sample_dir):
    from pet_breeds.sort import sort_images
    om = lr_models[1]
    files = [sample_dir/n for n in PHOTOS]
    got = {}
    for tta in (True, False):
        res = sort_images(om, incoming(tmp_path, sample_dir, f'in{tta}'), tmp_path/f'out{tta}', copy=True, min_prob=0, tta=tta)
        got[tta] = {r['source']: float(r['prob']) for r in res['rows']}
        want = {f.name: r['top'][0][1] for f, r in zip(files, om.predict_many(files, tta=tta))}
        assert got[tta].keys() == want.keys()
        np.testing.assert_allclose([got[tta][n] for n in want], list(want.values()), atol=1e-4)   # 4 decimals in the CSV
    assert max(abs(got[True][n] - got[False][n]) for n in got[True]) > 1e-3

def test_sort_command_passes_tta(lr_models, tmp_path, sample_dir, default):
    "The command line as a user types it: --tta or --no-tta whatever the default, or neither: runtime.TTA_DEFAULT as it is when it runs."
    from pet_breeds.files import PredictionsCSV
    from pet_breeds.sort_cli import sort_main
    om, folder, files = lr_models[1], lr_models[2], [sample_dir/n for n in PHOTOS]
    want = {tta: {f.name: r['top'][0][1] for f, r in zip(files, om.predict_many(files, tta=tta))} for tta in (True, False)}
    assert max(abs(want[True][n] - want[False][n]) for n in want[True]) > 1e-3
    for i, (flags, dflt, tta) in enumerate([(['--tta'], False, True), (['--no_tta'], True, False), ([], True, True), ([], False, False)]):
        out = tmp_path/f'out{i}'
        args = sort_main.command.parse([str(folder), str(incoming(tmp_path, sample_dir, f'in{i}')), '--out', str(out),
                                        '--copy', '--min_prob', '0', *flags])
        assert args['tta'] == (tta if flags else None)
        default(dflt)
        with redirect_stdout(io.StringIO()): sort_main(**args)
        got = {r['source']: float(r['prob']) for r in PredictionsCSV(out/'predictions.csv').rows()}
        assert got.keys() == want[tta].keys()
        np.testing.assert_allclose([got[n] for n in want[tta]], list(want[tta].values()), atol=1e-4)   # 4 decimals in the CSV

def test_widget_passes_tta(lr_models, sample_dir, tmp_path):
    from pet_breeds.widget import PredictWidget, app_notebook, app_main, predict_upload
    pm = lr_models[0]
    jpg = (sample_dir/'Bengal_10.jpg').read_bytes()
    upload = {'name': 'Bengal_10.jpg', 'type': 'image/jpeg', 'size': len(jpg), 'content': memoryview(jpg)}
    for tta in (True, False):
        w = PredictWidget(pm, tta=tta)
        w.process([upload])
        np.testing.assert_allclose([p for _, p in w.last[0]['top']], [p for _, p in pm.predict(jpg, tta=tta)], atol=1e-6)
    on, off = ([p for _, p in predict_upload(pm, upload, tta=t)['top']] for t in (True, False))
    assert np.abs(np.array(on) - np.array(off)).max() > 1e-3
    from pet_breeds.clean_cli import app_main as app_command   # the console script's parser
    assert [app_command.command.parse(['m', *a])['tta'] for a in (['--tta'], ['--no_tta'], [])] == [True, False, None]
    for tta in (True, False, None):
        assert f'tta={tta!r}, ' in (app_notebook(lr_models[2], tmp_path/str(tta), tta=tta)).read_text()

def test_app_command_passes_tta(lr_models, tmp_path, monkeypatch):
    "pet_breeds_app --tta / --no-tta / neither: the served notebook builds its widget so (Voila is not started)."
    import nbformat, pet_breeds.widget as widget
    from pet_breeds.clean_cli import app_main as app_command   # the console script's parser
    class Served(Exception): pass
    def execv(exe, cmd): raise Served(cmd)
    monkeypatch.setattr(widget.os, 'execv', execv)
    monkeypatch.chdir(tmp_path)   # app_main changes into the app's folder; back here afterwards
    for flags, tta in [(['--tta'], True), (['--no_tta'], False), ([], None)]:
        args = app_command.command.parse([str(lr_models[2]), '--no_browser', *flags])
        with redirect_stdout(io.StringIO()), pytest.raises(Served) as e:
            widget.app_main(**args)
        ns = {}
        nb = next(a for a in e.value.args[0] if str(a).endswith('.ipynb'))   # the served notebook
        cell = next(c for c in nbformat.read(nb, as_version=4).cells if 'PredictWidget(' in c.source)
        exec(cell.source.replace('PredictWidget(', 'app = PredictWidget('), ns)
        assert ns['app'].tta is tta
