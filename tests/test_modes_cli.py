"The other transfer-learning setups through pet_breeds_train: --mode features and --mode cut."
import json
from pathlib import Path
from conftest import run_cli, SAMPLE_IMAGES

def _train(sample_dir, out, *args):
    r = run_cli('pet_breeds_train', '--data', sample_dir, '--out', out, '--bs', '32', '--lr', '3e-3', *args)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads((out/'metrics.json').read_text())

def test_features_mode_caches_across_runs_and_exports_a_working_model(sample_dir, tmp_path):
    args = ('--arch', 'efficientnet_lite0', '--mode', 'features', '--epochs', '4', '--size', '96', '--item_size', '128',
            '--cache_dir', tmp_path/'cache')
    first = _train(sample_dir, tmp_path/'a', *args)
    second = _train(sample_dir, tmp_path/'b', *args)
    assert first['feature_cache']['misses'] == SAMPLE_IMAGES and second['feature_cache']['misses'] == 0
    assert second['feature_cache']['hits'] == SAMPLE_IMAGES
    assert {e['stage'] for e in second['epochs']} == {1} and len(second['epochs']) == 4
    assert set(second['epochs'][0]) >= {'stage', 'epoch', 'train_loss', 'valid_loss', 'error_rate', 'accuracy', 'seconds'}
    assert second['epochs'][-1]['error_rate'] < 0.25
    r = run_cli('pet_breeds_predict', tmp_path/'b'/'model', sample_dir/'Bengal_10.jpg', '--json')
    assert r.returncode == 0 and json.loads(r.stdout)['top'][0][0] in second['vocab']

def test_cut_mode_trains_the_seed_model_and_exports_it(sample_dir, tmp_path):
    m = _train(sample_dir, tmp_path/'cut', '--arch', 'vgg16', '--no_pretrained', '--mode', 'cut',
               '--cut_layer', 'block1_pool', '--epochs', '1', '--size', '64', '--item_size', '96')
    assert m['settings']['mode'] == 'cut' and m['settings']['cut_layer'] == 'block1_pool'
    meta = json.loads((tmp_path/'cut'/'model'/'model.json').read_text())
    assert meta['mode'] == 'cut' and meta['cut_layer'] == 'block1_pool'
    r = run_cli('pet_breeds_predict', tmp_path/'cut'/'model', sample_dir/'Abyssinian_1.jpg', '--json')
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)['top'][0][0] in m['vocab']

def test_cut_mode_offline_needs_the_vgg16_weights_or_no_pretrained(sample_dir, tmp_path):
    r = run_cli('pet_breeds_train', '--data', sample_dir, '--out', tmp_path/'x', '--arch', 'vgg16', '--mode', 'cut',
                env={'TORCH_HOME': str(tmp_path/'torch')})
    assert r.returncode != 0 and 'Traceback' not in r.stderr
    assert 'vgg16-397923af.pth' in r.stderr and '--no_pretrained' in r.stderr

def test_unknown_mode_is_refused(sample_dir, tmp_path):
    r = run_cli('pet_breeds_train', '--data', sample_dir, '--out', tmp_path/'x', '--mode', 'magic')
    assert r.returncode != 0 and "unknown mode 'magic'; choose one of: " in r.stderr and 'Traceback' not in r.stderr

def test_a_mode_registered_from_a_test_module_trains_exports_and_loads(sample_dir, tmp_path):
    """Issues 19 and 30: a new mode is one registration (a trainer with its declared options, a builder), in any module.
    Registered here, it is one of `pet_breeds_train --mode`'s choices, its option `--pool` is the command's, trains with
    the value given and is refused out of its declared range, and `load_model` rebuilds what it exported, with no file
    of the package edited."""
    from torch import nn
    from fastai.vision.all import Learner, error_rate, accuracy
    from pet_breeds.core import Range
    from pet_breeds.train import TRAINERS, Stage, ModeOption, register_trainer
    from pet_breeds.learner import MODEL_BUILDERS, register_builder
    from pet_breeds.inference import load_model
    def toy_net(pool, n_out): return nn.Sequential(nn.AdaptiveAvgPool2d(pool), nn.Flatten(), nn.Linear(3 * pool * pool, n_out))
    @register_builder('toy')
    def toy_model(meta): return toy_net(meta['pool'], meta['n_out'])
    @register_trainer('toy', options={'pool': ModeOption(3, int, Range(1), 'the side the image is pooled to')})
    def train_toy(dls, spec):
        pool = spec.options['pool']
        learn = Learner(dls, toy_net(pool, dls.c), metrics=[error_rate, accuracy], path=tmp_path)   # not the photos'
        learn.arch_name, learn.pretrained, learn.mode, learn.export_extra = 'toy', False, 'toy', {'pool': pool}
        return learn, spec.fit(learn, [Stage(spec.epochs, spec.lr)])
    try:
        r = run_cli('pet_breeds_train', '--data', sample_dir, '--out', tmp_path/'x', '--mode', 'magic')
        assert "choose one of: auto, " in r.stderr and ', toy' in r.stderr, r.stderr
        r = run_cli('pet_breeds_train', '--help')
        assert r.returncode == 0 and 'read by --mode toy: the side the image is pooled to' in ' '.join(r.stdout.split())
        r = run_cli('pet_breeds_train', '--data', sample_dir, '--out', tmp_path/'x', '--mode', 'toy', '--pool', '0')
        assert r.returncode == 2 and r.stderr.strip().splitlines() == [
            'pet_breeds_train: --pool is 0; it must be a whole number from 1'], r.stderr
        m = _train(sample_dir, tmp_path/'toy', '--mode', 'toy', '--no_pretrained', '--epochs', '2', '--size', '32',
                   '--item_size', '48', '--pool', '5')
        assert (m['mode'], m['settings']['mode'], m['settings']['pool']) == ('toy', 'toy', 5)
        assert len(m['epochs']) == 2 and {e['stage'] for e in m['epochs']} == {1}
        pm = load_model(tmp_path/'toy'/'model')
        assert (pm.meta['mode'], pm.meta['pool']) == ('toy', 5) and isinstance(pm.model[0], nn.AdaptiveAvgPool2d)
        assert pm.model[0].output_size == 5 and pm.model[2].out_features == len(m['vocab'])
        assert pm.predict(sample_dir/'Bengal_10.jpg', k=1)[0][0] in m['vocab']
    finally: TRAINERS.pop('toy', None); MODEL_BUILDERS.pop('toy', None)

def test_a_mode_in_its_own_module_is_found_by_name(tmp_path, monkeypatch):
    "A mode's module, `pet_breeds.<mode>`, is imported when the mode is first asked for: a new notebook needs no other edit."
    import sys, pet_breeds
    from pet_breeds.train import TRAINERS
    from pet_breeds.train_cli import mode_choices, main
    (tmp_path/'lazy_toy.py').write_text("from pet_breeds.train import register_trainer, train_finetune\n"
                                        "register_trainer('lazy_toy', options={'depth': 2})(train_finetune)\n")
    monkeypatch.setattr(pet_breeds, '__path__', [*pet_breeds.__path__, str(tmp_path)])
    try:
        assert 'lazy_toy' not in mode_choices()
        assert main.command.parse(['--mode', 'lazy_toy', '--depth', '3'])['depth'] == 3   # its option, once named
        assert 'lazy_toy' in mode_choices('lazy_toy') and TRAINERS['lazy_toy'].options['depth'].default == 2
        assert 'nope' not in mode_choices('nope')
    finally: TRAINERS.pop('lazy_toy', None); sys.modules.pop('pet_breeds.lazy_toy', None)
