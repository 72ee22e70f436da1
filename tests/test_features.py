"Feature extraction: the disk cache is reused and invalidated correctly, and a head on real ImageNet features learns."
import json
from pathlib import Path
import pytest, torch
from PIL import Image
import pet_breeds.features as F
from pet_breeds.core import open_image
from pet_breeds.data import pets_dataloaders
from pet_breeds.features import (FeatureCache, extract_features, extractor_key, split_at_features, train_features,
                                 features_dataloaders)
from pet_breeds.learner import pets_learner
from pet_breeds.inference import export_model, load_model
from conftest import copy_photos
from pet_breeds.train import TrainSpec

@pytest.fixture
def few_pets(tmp_path):
    "8 real images per breed, copied so that the tests can change them."
    return copy_photos(tmp_path/'images', 8)

def _dls(path, size=64): return pets_dataloaders(path, bs=8, item_size=size+16, size=size, num_workers=0)

class BodyCalls:
    "Counts the images that go through a network's body, with a forward hook."
    def __init__(self, model): self.images, self.calls = 0, 0; model[0].register_forward_hook(self)
    def __call__(self, m, inp, out): self.calls += 1; self.images += len(inp[0])

def _setup(path, size=64, arch='efficientnet_lite0'):
    dls = _dls(path, size)
    learn = pets_learner(dls, arch)
    extractor, _ = split_at_features(learn.model)
    return dls, learn, extractor, BodyCalls(learn.model)

def test_second_extraction_reads_the_cache_and_runs_no_body_forward(few_pets, tmp_path):
    dls, learn, ext, count = _setup(few_pets)
    files = dls.train_ds.items
    cache = FeatureCache(tmp_path/'cache', extractor_key('efficientnet_lite0', ext, dls))
    first, s1 = extract_features(ext, dls, files, cache)
    assert count.images == len(files) and s1['misses'] == len(files) and s1['hits'] == 0
    assert len(cache) == len(files)
    calls = count.calls
    again, s2 = extract_features(ext, dls, files, cache)
    assert count.calls == calls, "the cached features must not run the body again"
    assert s2 == {**s2, 'hits': len(files), 'misses': 0, 'body_images': 0}
    assert torch.equal(again, first)

def test_changed_image_content_is_recomputed_and_only_it(few_pets, tmp_path):
    dls, learn, ext, count = _setup(few_pets)
    files = list(dls.train_ds.items)
    cache = FeatureCache(tmp_path/'cache', extractor_key('efficientnet_lite0', ext, dls))
    before, _ = extract_features(ext, dls, files, cache)
    # same name, new content: flip the image left-right
    Image.open(files[3]).convert('RGB').transpose(Image.FLIP_LEFT_RIGHT).save(files[3], quality=95)
    n = count.images
    after, s = extract_features(ext, dls, files, cache)
    assert (s['hits'], s['misses'], s['body_images']) == (len(files) - 1, 1, 1)
    assert count.images == n + 1
    # the new picture's features, not the old one's again (batch order alone moves them by about 1e-5)
    assert (after[3] - before[3]).abs().max() > 0.1
    assert torch.equal(torch.cat([after[:3], after[4:]]), torch.cat([before[:3], before[4:]]))

def test_the_key_changes_with_the_model_and_the_sizes(few_pets):
    dls, learn, ext, _ = _setup(few_pets)
    key = extractor_key('efficientnet_lite0', ext, dls)
    assert key == extractor_key('efficientnet_lite0', ext, dls)
    other_size = _dls(few_pets, 48); pets_learner(other_size, 'efficientnet_lite0')   # adds the same Normalize
    assert extractor_key('efficientnet_lite0', ext, other_size) != key
    dls1, learn1, ext1, _ = _setup(few_pets, arch='efficientnet_lite1')
    assert extractor_key('efficientnet_lite1', ext1, dls1) != key
    with torch.no_grad(): ext[0][2][0].weight[0, 0] += 1            # the same arch with other weights
    assert extractor_key('efficientnet_lite0', ext, dls) != key

def _count_extractions(monkeypatch):
    "Count the images `train_features` sends through the body."
    seen = []
    real = F._run_extractor
    def counting(extractor, dls, files, *args): seen.append(len(files)); return real(extractor, dls, files, *args)
    monkeypatch.setattr(F, '_run_extractor', counting)
    return seen

def test_train_features_reuses_the_cache_across_runs_until_the_size_changes(few_pets, tmp_path, monkeypatch):
    seen = _count_extractions(monkeypatch)
    cache_dir = tmp_path/'cache'
    _, run1 = train_features(_dls(few_pets), TrainSpec('efficientnet_lite0', epochs=1, lr=1e-3, options={'cache_dir': cache_dir}))
    assert sum(seen) == 24 and run1['feature_cache']['misses'] == 24
    _, run2 = train_features(_dls(few_pets), TrainSpec('efficientnet_lite0', epochs=1, lr=1e-3, options={'cache_dir': cache_dir}))
    assert sum(seen) == 24, "second run must not run the body"
    assert run2['feature_cache'] == {**run2['feature_cache'], 'hits': 24, 'misses': 0, 'body_images': 0}
    _, run3 = train_features(_dls(few_pets, 48), TrainSpec('efficientnet_lite0', epochs=1, lr=1e-3, options={'cache_dir': cache_dir}))
    assert run3['feature_cache']['misses'] == 24 and sum(seen) == 48
    assert run3['feature_cache']['dir'] != run1['feature_cache']['dir']

def test_random_bodies_are_not_cached(few_pets, tmp_path, monkeypatch):
    seen = _count_extractions(monkeypatch)
    for _ in range(2): _, run = train_features(_dls(few_pets), TrainSpec('resnet18', pretrained=False, epochs=1,
                                                                                 lr=1e-3, options={'cache_dir': tmp_path/'cache'}))
    assert sum(seen) == 48 and run['feature_cache']['dir'] is None
    assert not (tmp_path/'cache').exists()

def test_record_has_train_two_stage_shape_and_lr_find(few_pets, tmp_path):
    _, run = train_features(_dls(few_pets), TrainSpec('efficientnet_lite0', epochs=2, options={'cache_dir': tmp_path/'cache'},
                                                              lr_find_fname=tmp_path/'lr.png', lr_find_its=20))
    assert {'epochs', 'lr_find', 'lr', 'stages', 'batch_losses', 'total_seconds'} <= set(run)
    assert [(r['stage'], r['epoch']) for r in run['epochs']] == [(1, 0), (1, 1)]
    assert set(run['epochs'][0]) == {'stage', 'epoch', 'train_loss', 'valid_loss', 'error_rate', 'accuracy', 'seconds'}
    assert run['lr'] == run['lr_find']['valley'] > 0
    assert (tmp_path/'lr.png').read_bytes()[:4] == b'\x89PNG'
    assert all(b['stage'] == 1 for b in run['batch_losses']) and len(run['batch_losses']) == 2 * 2   # 20 train / bs 8, full batches
    json.dumps(run)

def test_small_training_sets_still_get_a_batch():
    dls = features_dataloaders(torch.randn(5, 4), torch.arange(5) % 2, torch.randn(3, 4), torch.arange(3) % 2, bs=64)
    assert len(dls.train) == 1 and dls.train.one_batch()[0].shape == (5, 4)

@pytest.fixture(scope='module')
def real_run(sample_dir, tmp_path_factory):
    "The head on pretrained EfficientNet-Lite0 features of the 81 committed photos at 160 px."
    dls = pets_dataloaders(sample_dir, bs=32, item_size=192, size=160, num_workers=0)
    learn, run = train_features(dls, TrainSpec('efficientnet_lite0', epochs=8, lr=3e-3,
                                                   options={'cache_dir': tmp_path_factory.mktemp('features')}))
    return learn, run

def test_head_on_real_imagenet_features_separates_the_breeds(real_run, sample_dir):
    "Chance is 0.67; the head's epochs run on cached vectors, so each photo goes through the body once."
    learn, run = real_run
    assert run['epochs'][-1]['error_rate'] < 0.15, run['epochs']
    photos = len(list(sample_dir.glob('*.jpg')))
    assert photos == len(learn.dls.train_ds) + len(learn.dls.valid_ds) > 60
    assert run['feature_cache']['misses'] == run['feature_cache']['body_images'] == photos
    assert len(run['epochs']) == 8

def test_features_are_fp32_under_auto_on_every_cpu(few_pets, tmp_path, monkeypatch):
    "Cached features equal what the exported network computes, so 'auto' is fp32 for them even where training is bf16."
    import pet_breeds.precision as T
    monkeypatch.setattr(T, 'native_bf16_cpu', lambda: True)      # a CPU with native bf16, whatever this one is
    assert T.choose_policy('auto', 'cpu').name == 'bf16'
    seen, real = [], F._run_extractor
    def spy(extractor, dls, files, bs=None, policy=None): seen.append(policy.name); return real(extractor, dls, files, bs, policy)
    monkeypatch.setattr(F, '_run_extractor', spy)
    dls, learn, ext, _ = _setup(few_pets)
    files = list(dls.valid_ds.items)
    fp32, _ = extract_features(ext, dls, files, policy=T.choose_policy('fp32', 'cpu'))
    assert torch.equal(extract_features(ext, dls, files)[0], fp32)    # the default policy: fp32
    assert seen == ['fp32', 'fp32']; seen.clear()
    spec = dict(epochs=1, lr=1e-3, options={'cache_dir': tmp_path/'cache'})
    _, run = train_features(_dls(few_pets), TrainSpec('efficientnet_lite0', **spec))
    assert seen == ['fp32', 'fp32'] and run['policy']['precision'] == 'bf16'   # features fp32, the head's training the machine's
    _, run = train_features(_dls(few_pets), TrainSpec('efficientnet_lite0', precision='bf16', **spec))
    assert seen[2:] == ['bf16', 'bf16'] and run['feature_cache']['misses'] == 24   # asked for: bf16, cached apart

def test_exported_model_gives_the_heads_probabilities(real_run, tmp_path):
    learn, _ = real_run
    dest = export_model(learn, tmp_path/'model')
    assert json.loads((dest/'model.json').read_text())['mode'] == 'features'
    pm = load_model(dest, precision='fp32')   # compared with the fp32 head at 1e-4
    files = learn.dls.valid_ds.items
    from_files = pm.probs([open_image(f) for f in files])
    from_features, _ = learn.feature_learner.get_preds(ds_idx=1)
    torch.testing.assert_close(from_files, from_features, atol=1e-4, rtol=0)
    assert len(set(from_files.argmax(1).tolist())) == 3, "a degenerate model would make this test vacuous"
