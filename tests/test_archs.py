"Every architecture in the registry: builds, freezes as the two stages expect, trains a batch, and handles its weights."
from pathlib import Path
import pytest, torch, torchvision
from torch import nn
from safetensors.torch import save_file
from conftest import make_synthetic_pets
from pet_breeds.core import WeightsNotFound
from pet_breeds.data import pets_dataloaders
from pet_breeds.archs import ARCHS, ensure_weights, hub_checkpoints
from pet_breeds.learner import pets_learner

def _size(name): return max(32, -(-ARCHS[name].family.min_size // 16) * 16)   # Inception V3 takes 75 px and up

@pytest.fixture(scope='module')
def tiny_images(tmp_path_factory):
    "16 tiny images: with valid_pct=0.25 and bs=8, one training batch and one validation batch."
    return make_synthetic_pets(tmp_path_factory.mktemp('archs')/'images', n=4, size=48)

def _dls(images, size):
    return pets_dataloaders(images, bs=8, item_size=size, size=size, valid_pct=0.25, num_workers=0)

def _is_bn(m): return isinstance(m, nn.modules.batchnorm._BatchNorm)

def _body_params(body):
    "(name, param, is_batchnorm) for every parameter of the body."
    return [(f'{mn}.{pn}', p, _is_bn(m)) for mn, m in body.named_modules()
            for pn, p in m.named_parameters(recurse=False)]

@pytest.mark.parametrize('name', list(ARCHS))
def test_builds_freezes_and_trains_a_batch(name, tiny_images):
    learn = pets_learner(_dls(tiny_images, _size(name)), name, pretrained=False)
    assert learn.arch_name == name
    body, head = learn.model[0], learn.model[1]
    learn.freeze()
    params = _body_params(body)
    assert any(bn for _, _, bn in params), f"{name}: no batch-norm layers found in the body"
    wrong = [n for n, p, bn in params if p.requires_grad != bn]
    assert not wrong, f"{name}: frozen body must train batch norm only; wrong: {wrong[:5]}"
    assert all(p.requires_grad for p in head.parameters())
    frozen0 = {n: p.detach().clone() for n, p, bn in params if not bn}
    head0 = [p.detach().clone() for p in head.parameters()]
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-3)
    assert len(learn.dls.train) == 1 and len(learn.recorder.losses) == 1
    assert torch.isfinite(learn.recorder.losses[0])
    assert all(torch.equal(frozen0[n], p) for n, p, bn in _body_params(body) if not bn), f"{name}: frozen weights moved"
    assert any(not torch.equal(a, b) for a, b in zip(head0, head.parameters())), f"{name}: the head did not train"
    learn.unfreeze()
    assert all(p.requires_grad for p in learn.model.parameters())


# every architecture whose weights are a file its source names (torchvision's and timm's): derived from the registry
DOWNLOADABLE = [n for n, a in ARCHS.items() if a.family.source.offline_file(a) is not None]
# a few of those files by name, so that the derivation cannot drift unseen (the batch-norm VGG, timm's GitHub file)
PINNED_FILES = {'resnet50': 'resnet50-11ad3fa6.pth', 'vgg16': 'vgg16_bn-6c64b313.pth',
                'inception_v3': 'inception_v3_google-0cc3c7bd.pth', 'xception': 'xception-43020ad28.pth'}

def test_the_downloadable_archs_and_their_files():
    assert set(PINNED_FILES) <= set(DOWNLOADABLE) and 'efficientnet_lite0' not in DOWNLOADABLE
    for name, fn in PINNED_FILES.items(): assert ARCHS[name].family.source.offline_file(ARCHS[name]).name == fn

@pytest.mark.parametrize('name', DOWNLOADABLE)
def test_missing_weights_name_the_file_and_folder(name, offline, tiny_images):
    arch = ARCHS[name]
    with pytest.raises(WeightsNotFound) as e: pets_learner(_dls(tiny_images, _size(name)), name, pretrained=True)
    msg = str(e.value)
    assert arch.family.source.offline_file(arch).name in msg and str(hub_checkpoints()) in msg, msg
    assert str(offline) in msg
    assert 'pretrained=False' in msg and '--no_pretrained' in msg

@pytest.mark.parametrize('name', [n for n, a in ARCHS.items() if a.family.name == 'efficientnet_lite'])
def test_lite_weights_load_offline(name, offline, tiny_images):
    learn = pets_learner(_dls(tiny_images, 32), name, pretrained=True)
    ref = torch.load(ensure_weights(name), map_location='cpu', weights_only=True)
    assert torch.equal(learn.model[0][0][0].weight, ref['_conv_stem.weight'])
    assert torch.equal(learn.model[0][2][0].weight, ref['_conv_head.weight'])
    assert not learn.model[0][0][0].weight.requires_grad     # pretrained learners start frozen

def _xception_state():
    import timm
    return timm.create_model('legacy_xception', pretrained=False).state_dict()

def test_xception_loads_a_safetensors_file_put_where_the_error_says(offline, tiny_images):
    ref = _xception_state()
    dest = hub_checkpoints()/'legacy_xception.safetensors'
    dest.parent.mkdir(parents=True)
    save_file(ref, dest)
    assert ensure_weights('xception') == dest
    learn = pets_learner(_dls(tiny_images, 80), 'xception', pretrained=True)
    assert torch.equal(learn.model[0].model.conv1.weight, ref['conv1.weight'])
    assert torch.equal(learn.model[0].model.block12.skip.weight, ref['block12.skip.weight'])

def test_xception_loads_timms_own_cached_file(offline, tiny_images):
    ref = _xception_state()
    dest = hub_checkpoints()/PINNED_FILES['xception']
    dest.parent.mkdir(parents=True)
    torch.save(ref, dest)
    assert ensure_weights('xception') == dest
    learn = pets_learner(_dls(tiny_images, 80), 'xception', pretrained=True)
    assert torch.equal(learn.model[0].model.conv1.weight, ref['conv1.weight'])

def test_inception_loads_cached_torchvision_weights(offline, tiny_images):
    "The custom cut (no auxiliary classifier) keeps the pretrained main path's weights."
    ref = torchvision.models.inception_v3(aux_logits=True, init_weights=False).state_dict()
    dest = hub_checkpoints()/PINNED_FILES['inception_v3']
    dest.parent.mkdir(parents=True)
    torch.save(ref, dest)
    learn = pets_learner(_dls(tiny_images, 80), 'inception_v3', pretrained=True)
    assert torch.equal(learn.model[0][0].conv.weight, ref['Conv2d_1a_3x3.conv.weight'])
    assert torch.equal(learn.model[0][-1].branch_pool.conv.weight, ref['Mixed_7c.branch_pool.conv.weight'])
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-3)
