"The pretrained ImageNet classifier as it is: top-k on real pets, and the pet_breeds_imagenet command."
import json
import pytest, torch
from PIL import Image
from conftest import run_cli
from pet_breeds.core import WeightsNotFound
from pet_breeds.imagenet import (IMAGENET_CLASSES, DOMESTIC_CAT_CLASSES, DOG_CLASSES, imagenet_classifier,
                                 imagenet_topk, imagenet_topk_many)

def _cats(sample_dir):
    return sorted(sample_dir.glob('Abyssinian_1*.jpg'))[:5] + sorted(sample_dir.glob('Bengal_1*.jpg'))[:5]

def _dogs(sample_dir): return sorted(sample_dir.glob('american_bulldog_1*.jpg'))[:10]

def _has(top, classes): return any(IMAGENET_CLASSES.index(name) in classes for name, _ in top)

def test_class_names_come_from_torchvision_offline():
    assert len(IMAGENET_CLASSES) == 1000 and len(set(IMAGENET_CLASSES)) >= 998   # 'crane' and 'maillot' appear twice
    assert [IMAGENET_CLASSES[i] for i in DOMESTIC_CAT_CLASSES] == ['tabby', 'tiger cat', 'Persian cat', 'Siamese cat', 'Egyptian cat']
    assert IMAGENET_CLASSES[151] == 'Chihuahua' and IMAGENET_CLASSES[268] == 'Mexican hairless'

def test_cats_and_dogs_are_recognised_without_any_training(sample_dir):
    """Measured here with EfficientNet-Lite0: 10/10 cats have a domestic cat class in their top 3
    (mostly 'Egyptian cat', 'tabby', 'tiger cat'), 10/10 bulldogs a dog breed ('boxer', 'bull mastiff',
    'American Staffordshire terrier')."""
    cats, dogs = _cats(sample_dir), _dogs(sample_dir)
    assert len(cats) == len(dogs) == 10
    res = imagenet_topk_many(cats + dogs, k=3)
    assert all(len(r['top']) == 3 for r in res)
    cat_hits = sum(_has(r['top'], DOMESTIC_CAT_CLASSES) for r in res[:10])
    dog_hits = sum(_has(r['top'], DOG_CLASSES) for r in res[10:])
    assert cat_hits >= 8, res[:10]
    assert dog_hits >= 8, res[10:]

def test_topk_is_sorted_and_accepts_path_bytes_and_pil(sample_dir):
    f = _cats(sample_dir)[0]
    a, b, c = imagenet_topk(f, k=5), imagenet_topk(f.read_bytes(), k=5), imagenet_topk(Image.open(f), k=5)
    assert [n for n, _ in a] == [n for n, _ in b] == [n for n, _ in c]
    probs = [p for _, p in a]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-5

def test_unreadable_items_get_an_error_and_the_rest_go_on(sample_dir, tmp_path):
    (tmp_path/'notes.jpg').write_text('not a picture')
    res = imagenet_topk_many([tmp_path/'notes.jpg', _dogs(sample_dir)[0], tmp_path/'missing.jpg'], k=2)
    assert 'not an image' in res[0]['error'] and 'no such file' in res[2]['error']
    assert len(res[1]['top']) == 2 and 'error' not in res[1]

def test_lite_transform_is_resize_then_centre_crop_at_the_arch_size():
    clf = imagenet_classifier('efficientnet_lite2')
    assert clf.transform(Image.new('RGB', (640, 480))).shape == (3, 260, 260)
    x = clf.transform(Image.new('RGB', (300, 300), (127, 127, 127)))
    assert x.abs().max() < 0.01                  # LITE_STATS: (x - 127) / 128

def test_missing_torchvision_weights_raise_weights_not_found(offline):
    with pytest.raises(WeightsNotFound) as e: imagenet_classifier('resnet50')
    assert 'resnet50-11ad3fa6.pth' in str(e.value) and str(offline/'hub'/'checkpoints') in str(e.value)

def test_cli_prints_json_lines_and_fails_on_unreadable_files(sample_dir, tmp_path):
    bad = tmp_path/'broken.jpg'; bad.write_bytes(b'\xff\xd8 truncated')
    cat, dog = _cats(sample_dir)[0], _dogs(sample_dir)[0]
    r = run_cli('pet_breeds_imagenet', cat, bad, dog, '--arch', 'efficientnet_lite0', '--k', '3', '--json')
    assert r.returncode == 3, r.stderr[-2000:]   # EXIT_PARTIAL
    lines = [json.loads(l) for l in r.stdout.strip().splitlines()]
    assert [l['file'] for l in lines] == [str(cat), str(bad), str(dog)]
    assert _has(lines[0]['top'], DOMESTIC_CAT_CLASSES) and _has(lines[2]['top'], DOG_CLASSES)
    assert all(isinstance(n, str) and 0 <= p <= 1 for n, p in lines[0]['top']) and len(lines[0]['top']) == 3
    assert 'error' in lines[1] and 'broken.jpg' in lines[1]['error']

def test_cli_plain_text_and_missing_weights(sample_dir, tmp_path):
    cat = _cats(sample_dir)[1]
    r = run_cli('pet_breeds_imagenet', cat, '--arch', 'efficientnet_lite0', '--k', '2')
    assert r.returncode == 0, r.stderr[-2000:]
    line, = r.stdout.strip().splitlines()
    assert line.startswith(f'{cat}: ') and line.count('%') == 2
    no_network = {'https_proxy': 'http://127.0.0.1:9', 'HTTPS_PROXY': 'http://127.0.0.1:9'}   # refused at once
    r = run_cli('pet_breeds_imagenet', cat, '--arch', 'resnet18', env={'TORCH_HOME': str(tmp_path), **no_network})
    assert r.returncode != 0
    assert 'resnet18-f37072fd.pth' in r.stderr and 'Traceback' not in r.stderr

def _fake_weights(name, dest_dir):
    "Random weights saved where the offline cache is looked up: enough to check the plumbing, not the classes."
    import timm, torchvision
    from safetensors.torch import save_file
    dest_dir.mkdir(parents=True)
    if name == 'xception': save_file(timm.create_model('legacy_xception').state_dict(), dest_dir/'legacy_xception.safetensors')
    else: torch.save(torchvision.models.resnet18().state_dict(), dest_dir/'resnet18-f37072fd.pth')

@pytest.mark.parametrize('arch,size', [('resnet18', 224), ('xception', 299)])
def test_cached_weights_give_the_whole_classifier_and_its_transform(arch, size, tmp_path, monkeypatch):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path))
    _fake_weights(arch, tmp_path/'hub'/'checkpoints')
    clf = imagenet_classifier(arch)
    x = clf.transform(Image.new('RGB', (400, 300)))
    assert x.shape == (3, size, size)
    p = clf.probs([Image.new('RGB', (400, 300))])
    assert p.shape == (1, 1000) and abs(float(p.sum()) - 1) < 1e-4
