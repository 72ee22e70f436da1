"""ONNX export and the torch-free runtime: the recorded preprocessing against fastai's, one image opener for
both runtimes, onnxruntime against PyTorch on real photos for every architecture family, and the commands without PyTorch."""
import json, shutil, subprocess, sys
from pathlib import Path
import numpy as np, pytest, torch
from torch import nn
from PIL import Image
from safetensors.torch import save_file
from conftest import run_cli, random_export_meta
from pet_breeds import core, runtime
from pet_breeds.core import open_image, read_rgb, BadImage
from pet_breeds.archs import get_arch, family_examples, weights_here, arch_body
from pet_breeds.learner import build_model
from pet_breeds.inference import PetModel, load_model, export_model
from pet_breeds.deploy import export_onnx
from pet_breeds.runtime import OnnxModel, Preprocess, preprocess_spec

# real photos of the three breeds, with the sample's GIF and RGBA PNG under .jpg names
PHOTOS = ['Abyssinian_1.jpg', 'Abyssinian_34.jpg', 'Abyssinian_5.jpg', 'Abyssinian_77.jpg', 'Bengal_10.jpg',
          'Bengal_57.jpg', 'american_bulldog_100.jpg', 'american_bulldog_22.jpg']
VOCAB = ['Abyssinian', 'Bengal', 'american_bulldog']

# a process where PyTorch, fastai and their helpers cannot be imported: a machine with only the runtime's dependencies
TORCH_FREE = ("import sys\n"
              "for m in ('torch', 'torchvision', 'fastai', 'fastcore', 'timm', 'safetensors', 'pandas'): sys.modules[m] = None\n")

@pytest.fixture(scope='module')
def photos(sample_dir):
    files = [sample_dir/n for n in PHOTOS]
    assert all(f.exists() for f in files)
    return files

def random_model(dest:Path, arch:str, photos, mode:str='finetune', size:int=64, item_size:int=96, seed:int=0, **extra):
    """An exported model folder (`export_model`'s format) with random weights (the body's ImageNet ones where they are
    here), and its `PetModel`. The head's batch norm statistics come from `photos` and the last layer is scaled so that
    the logits vary across them with a standard deviation of 1.5 (more amplifies float32 rounding in a random network,
    and Inception's is ill-conditioned): probabilities far from uniform and far from constant, or agreement would say
    little."""
    torch.manual_seed(seed)
    meta = random_export_meta(arch, VOCAB, mode, size, item_size, **extra)
    model = build_model(meta)
    if mode == 'finetune' and weights_here(arch):   # the body's ImageNet weights where they are here (PyPI's Lite):
        model[0].load_state_dict(arch_body(arch).state_dict())   # a random Lite body's features hardly vary
    pm = PetModel(model, meta, device='cpu', precision='fp32')   # compared with onnxruntime, which runs fp32
    xb = pm.dl([open_image(f) for f in photos]).one_batch()[0]
    model.eval()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d): m.reset_running_stats(); m.momentum = None; m.train()   # the head's take the batch's statistics
    with torch.no_grad(): model(xb)
    with torch.inference_mode(): logits = model.eval()(xb)
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    with torch.no_grad():
        c = 1.5 / float((logits - logits.mean(0)).std())
        for p in (last.weight, last.bias):
            if p is not None: p.mul_(c)
    dest.mkdir(parents=True)
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, dest/'model.safetensors')
    (dest/'model.json').write_text(json.dumps(meta, indent=1))
    return dest, pm

def assert_agree(folder:Path, photos, atol:float=1e-4, pm=None):
    "onnxruntime (numpy preprocessing) and PyTorch (fastai transforms) give the same probabilities on `photos`."
    expected = (pm or load_model(folder, precision='fp32')).probs([open_image(f) for f in photos]).numpy()
    got = OnnxModel.load(folder).probs([read_rgb(f) for f in photos], bs=3)
    np.testing.assert_allclose(got, expected, atol=atol, rtol=0)
    assert (got.argmax(1) == expected.argmax(1)).all()
    assert np.ptp(expected, axis=0).max() > 0.1, "probabilities that hardly vary would make the agreement vacuous"
    return expected

# ---- preprocessing and image opening -------------------------------------------------------------------------

@pytest.mark.parametrize('item_size,size', [(96, 64), (160, 64), (460, 224), (299, 299), (128, 96)])
def test_recorded_preprocessing_makes_fastais_batch(photos, item_size, size):
    "The numpy steps of `preprocess_spec` against `PetModel.dl` (fastai's Resize, aug_transforms in validation mode, Normalize)."
    for norm in ({'mean': [0.485, 0.456, 0.406], 'std': [0.229, 0.224, 0.225]}, None):
        meta = {'vocab': VOCAB, 'item_size': item_size, 'size': size, 'min_scale': 0.75, 'normalize': norm}
        ims = [open_image(f) for f in photos]
        expected = PetModel(nn.Identity(), meta, device='cpu').dl(ims, bs=len(ims)).one_batch()[0].numpy()
        got = Preprocess(preprocess_spec(meta))([read_rgb(f) for f in photos])
        assert got.shape == expected.shape and got.dtype == np.float32
        np.testing.assert_allclose(got, expected, atol=2e-4, rtol=0)

def test_preprocess_spec_records_the_area_step():
    assert preprocess_spec({'item_size': 460, 'size': 224})['area_resize'] == 448
    assert preprocess_spec({'item_size': 160, 'size': 64})['area_resize'] == 128
    assert preprocess_spec({'item_size': 128, 'size': 64})['area_resize'] is None   # exactly 2x: fastai skips it

def _odd_images(d:Path) -> list:
    "Files that need open_image's fixes: EXIF rotation, 16-bit, grey+alpha, palette transparency, animation."
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8))
    exif = rgb.getexif(); exif[0x0112] = 6
    rgb.save(d/'rotated.jpg', exif=exif)
    Image.fromarray(rng.integers(0, 65535, (20, 30), dtype=np.uint16)).save(d/'deep.png')
    Image.fromarray(rng.integers(0, 255, (20, 30, 2), dtype=np.uint8), 'LA').save(d/'la.png')
    p = rgb.convert('P'); p.info['transparency'] = 0; p.save(d/'pal.png', transparency=0)
    frames = [Image.new('RGB', (16, 16), c) for c in ('red', 'blue')]
    frames[0].save(d/'anim.gif', save_all=True, append_images=frames[1:])
    rgb.convert('L').save(d/'grey.bmp')
    return [d/n for n in ('rotated.jpg', 'deep.png', 'la.png', 'pal.png', 'anim.gif', 'grey.bmp')]

def test_the_runtime_opens_images_with_the_training_opener(photos, sample_dir, odd_dir, tmp_path):
    "One set of rules for a photo, whichever runtime predicts: the torch-free runtime uses core's `read_rgb`, and `open_image` is its picture as a PILImage."
    assert runtime.read_rgb is core.read_rgb and runtime.topk_in_batches.__defaults__[-2:] == (core.read_rgb, core.BadImage)
    real_odd = sorted(odd_dir.iterdir())   # real photos: CMYK, grayscale, 16-bit, EXIF-rotated, tiny, large
    assert [f.name for f in real_odd] == ['cmyk.jpg', 'exif_rotated.jpg', 'grayscale.jpg', 'large.jpg', 'sixteen_bit.png', 'tiny.jpg']
    for f in photos + _odd_images(tmp_path) + real_odd:
        a, b = read_rgb(f), open_image(f)
        assert a.mode == 'RGB' and a.size == b.size and type(b).__name__ == 'PILImage', f
        assert (np.asarray(a) == np.asarray(b)).all() and a.origin == b.origin, f
        assert (np.asarray(read_rgb(f.read_bytes())) == np.asarray(a)).all()
    (tmp_path/'empty.jpg').write_bytes(b'')
    (tmp_path/'cut.jpg').write_bytes((sample_dir/'Bengal_10.jpg').read_bytes()[:3000])
    (tmp_path/'folder.jpg').mkdir()
    (tmp_path/'link.jpg').symlink_to(tmp_path/'nowhere.jpg')
    bad = [sample_dir/'Abyssinian_100.mat', tmp_path/'missing.jpg', tmp_path/'empty.jpg', tmp_path/'cut.jpg',
           tmp_path/'folder.jpg', tmp_path/'link.jpg']
    for f in bad:
        with pytest.raises(BadImage) as e1: open_image(f)
        with pytest.raises(BadImage) as e2: read_rgb(f)
        assert str(e1.value) == str(e2.value) and str(e2.value).startswith(str(f)), f
    with pytest.raises(BadImage, match='file too large'): read_rgb(photos[0], max_bytes=1000)
    with pytest.raises(BadImage, match='decompression bomb'): read_rgb(photos[0], max_pixels=100)

# ---- onnxruntime agrees with PyTorch, per architecture family ------------------------------------------------

@pytest.fixture(scope='module')
def lite_model(tmp_path_factory, sample_dir):
    "EfficientNet-Lite0 with its genuine ImageNet weights (installed offline), exported by export_model, then as ONNX."
    from pet_breeds.data import pets_dataloaders
    from pet_breeds.learner import pets_learner
    dls = pets_dataloaders(sample_dir, bs=32, item_size=96, size=64, num_workers=0, cache=False)  # originals, as predict opens them
    learn = pets_learner(dls, 'efficientnet_lite0', pretrained=True)
    folder = export_model(learn, tmp_path_factory.mktemp('lite')/'model')
    export_onnx(folder)
    return folder, learn, dls

def test_pretrained_efficientnet_lite0_agrees_on_real_photos(lite_model, photos):
    folder, learn, dls = lite_model
    expected = assert_agree(folder, photos)
    fastai_probs, _ = learn.get_preds(dl=dls.test_dl(list(photos)))   # the in-memory learner, as trained
    np.testing.assert_allclose(OnnxModel.load(folder).probs([read_rgb(f) for f in photos]), fastai_probs.numpy(), atol=1e-4, rtol=0)
    meta = json.loads((folder/'model.json').read_text())
    assert meta['preprocess'] == preprocess_spec(meta) and meta['onnx']['input']['shape'] == ['batch', 3, 64, 64]
    assert meta['onnx']['check_max_abs_diff'] <= 1e-4

def _px(arch): return max(32, -(-get_arch(arch).family.min_size // 16) * 16)   # the family's smallest, rounded up

# (arch, mode, size, item_size, extra): every family of the registry that exports to ONNX (from items over twice the
# size: the area step too), then the cut and features modes
FAMILIES = [(a, 'finetune', _px(a), _px(a) * 5 // 2, {}) for a in family_examples(onnx=True)] + [
    ('vgg16', 'cut', 48, 64, {'cut_layer': 'block1_pool'}),
    ('resnet18', 'features', 48, 64, {}),
]

# Inception's random network amplifies float32 rounding (see random_model): given the very same input batch, the two
# runtimes differ by up to 2e-3 on PHOTOS, depending on the seed; a wrong preprocessing step differs by 1e-2 and more
ATOL = {'inception_v3': 1e-3}

@pytest.mark.parametrize('arch,mode,size,item_size,extra', FAMILIES, ids=[f'{a}-{m}' for a, m, *_ in FAMILIES])
def test_every_family_agrees_on_real_photos(tmp_path, photos, arch, mode, size, item_size, extra):
    folder, pm = random_model(tmp_path/'model', arch, photos, mode, size, item_size, **extra)
    fn = export_onnx(folder, loaded=pm)
    assert fn == folder/'model.onnx' and fn.stat().st_size > 1000
    assert_agree(folder, photos, pm=pm, atol=ATOL.get(arch, 1e-4))

# ---- the commands and the sorter -----------------------------------------------------------------------------

@pytest.fixture(scope='module')
def onnx_model(tmp_path_factory, photos):
    "A random ResNet18 exported by the command, with both model.safetensors and model.onnx."
    folder, _ = random_model(tmp_path_factory.mktemp('cmd')/'model', 'resnet18', photos)
    r = run_cli('pet_breeds_export', folder)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.startswith(f"wrote {folder/'model.onnx'} (") and 'agrees with PyTorch' in r.stdout
    return folder

def test_export_cli_refusals(onnx_model, tmp_path, capsys):
    from pet_breeds.deploy import export_main
    with pytest.raises(SystemExit) as e: export_main([str(onnx_model), '--no_onnx'])
    assert e.value.code == 2 and 'nothing to export: leave out --no_onnx' in capsys.readouterr().err
    with pytest.raises(SystemExit) as e: export_main([str(tmp_path)])
    assert e.value.code == f'pet_breeds_export: {tmp_path}: not an exported pet_breeds model (no model.json)'
    assert not (tmp_path/'model.onnx').exists()

def test_predict_without_pytorch_prints_what_pytorch_prints(onnx_model, photos, sample_dir, tmp_path):
    "The same command, the same files (two of them unreadable): PyTorch here, then onnxruntime where torch cannot be imported."
    files = [*map(str, photos), str(sample_dir/'Abyssinian_100.mat'), str(tmp_path/'missing.jpg')]
    by_torch = run_cli('pet_breeds_predict', onnx_model, *files, '--json', '--k', '3', '--precision', 'fp32')   # the console script, with PyTorch in fp32, as onnxruntime
    assert by_torch.returncode == 3, by_torch.stderr   # EXIT_PARTIAL: two files named, the rest predicted
    code = TORCH_FREE + ("from pet_breeds.deploy import predict_main\n"
                         "try: predict_main(sys.argv[1:])\n"
                         "finally: print('loaded:', sorted(m for m, v in sys.modules.items() if v is not None and m.split('.')[0] in ('torch', 'fastai', 'fastcore')), file=sys.stderr)\n")
    by_onnx = subprocess.run([sys.executable, '-c', code, str(onnx_model), *files, '--json', '--k', '3'],
                             capture_output=True, text=True, timeout=300)
    assert by_onnx.returncode == 3 and by_onnx.stderr.strip().splitlines()[-1] == 'loaded: []', by_onnx.stderr
    rows_t, rows_o = [[json.loads(l) for l in r.stdout.splitlines()] for r in (by_torch, by_onnx)]
    assert [r['file'] for r in rows_o] == files and [r.get('error') for r in rows_o] == [r.get('error') for r in rows_t]
    for t, o in zip(rows_t, rows_o):
        if 'top' in t:
            assert [l for l, _ in o['top']] == [l for l, _ in t['top']]
            np.testing.assert_allclose([p for _, p in o['top']], [p for _, p in t['top']], atol=1e-4, rtol=0)
    text = subprocess.run([sys.executable, '-c', code, str(onnx_model/'model.onnx'), files[0]], capture_output=True, text=True, timeout=300)
    assert text.returncode == 0 and text.stdout.startswith(f'{files[0]}: ') and '%' in text.stdout

def test_predict_without_pytorch_on_a_pytorch_only_model(onnx_model, tmp_path):
    (tmp_path/'pt').mkdir()
    for n in ('model.json', 'model.safetensors'): shutil.copy(onnx_model/n, tmp_path/'pt'/n)
    code = TORCH_FREE + "from pet_breeds.deploy import predict_main\npredict_main(sys.argv[1:])\n"
    r = subprocess.run([sys.executable, '-c', code, str(tmp_path/'pt'), 'x.jpg'], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and 'Traceback' not in r.stderr, r.stderr
    assert 'needs PyTorch' in r.stderr and f'pet_breeds_export {tmp_path/"pt"}' in r.stderr
    from pet_breeds.deploy import predict_main
    with pytest.raises(SystemExit) as e: predict_main([str(tmp_path/'pt'), 'x.jpg', '--runtime', 'onnx'])
    assert 'no ONNX model here' in e.value.code and e.value.code.endswith(f'pet_breeds_export {tmp_path/"pt"}')

def test_runtime_modules_import_without_pytorch():
    code = TORCH_FREE + ("import pet_breeds.runtime, pet_breeds.deploy\n"
                         "print(sorted({m.split('.')[0] for m in sys.modules if sys.modules[m] is not None} & "
                         "{'torch', 'fastai', 'fastcore', 'torchvision', 'onnxruntime', 'onnx', 'numpy', 'PIL'}))\n")
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["['PIL',", "'numpy']"]    # onnxruntime is imported when a model is loaded

def test_sorter_sorts_alike_with_either_runtime(onnx_model, photos, tmp_path):
    from pet_breeds.sort import sort_images
    res = {}
    for kind, model in [('torch', load_model(onnx_model, precision='fp32')), ('onnx', load_model(onnx_model/'model.onnx'))]:
        inc = tmp_path/f'in_{kind}'; inc.mkdir()
        for f in photos: shutil.copy(f, inc/f.name)
        res[kind] = sort_images(model, inc, tmp_path/f'out_{kind}', copy=True, min_prob=0.0)
    assert type(load_model(onnx_model/'model.onnx')).__name__ == 'OnnxModel'
    key = lambda rows: sorted((r['source'], r['destination'], r['label']) for r in rows)
    assert key(res['onnx']['rows']) == key(res['torch']['rows']) and res['onnx']['sorted'] == len(photos)
    probs = {k: sorted((r['source'], float(r['prob'])) for r in v['rows']) for k, v in res.items()}
    np.testing.assert_allclose([p for _, p in probs['onnx']], [p for _, p in probs['torch']], atol=2e-4)   # 4 decimals in the CSV

def test_sort_command_runs_the_onnx_model(onnx_model, photos, tmp_path, capsys):
    from pet_breeds.sort_cli import sort_main
    inc = tmp_path/'in'; inc.mkdir()
    for f in photos[:3]: shutil.copy(f, inc/f.name)
    sort_main(model=str(onnx_model), incoming=str(inc), out=str(tmp_path/'out'), copy=True, onnx=True)
    placed = sorted((tmp_path/'out').rglob('*.jpg'))
    assert len(placed) == 3 and all(p.parent.name in VOCAB + ['_unsure'] for p in placed), placed
