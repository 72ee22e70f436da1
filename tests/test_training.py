"The two-stage fine-tune: what each stage may change, learning, and real transfer from ImageNet."
import os, tempfile
from pathlib import Path
import pytest, torch
from torch import nn
from pet_breeds.core import WeightsNotFound
from pet_breeds.data import pets_dataloaders
from pet_breeds.archs import ensure_weights
from pet_breeds.learner import pets_learner
from pet_breeds.train import train_two_stage

def _convs(module):
    return {n: m.weight.detach().clone() for n, m in module.named_modules() if isinstance(m, nn.Conv2d)}

def _bns(module):
    return {n: m.weight.detach().clone() for n, m in module.named_modules() if isinstance(m, nn.BatchNorm2d)}

def _changed(before, after): return [n for n in before if not torch.equal(before[n], after[n])]

@pytest.fixture
def small_dls(synthetic_pets):
    return pets_dataloaders(synthetic_pets, bs=16, item_size=48, size=32, num_workers=0)

def test_stage1_trains_head_and_bn_only_stage2_trains_body(small_dls):
    learn = pets_learner(small_dls, 'resnet18', pretrained=False)
    body, head = learn.model[0], learn.model[1]
    conv0, bn0 = _convs(body), _bns(body)
    head0 = {k: v.clone() for k, v in head.state_dict().items()}
    train_two_stage(learn, freeze_epochs=1, epochs=0, lr=1e-2)
    assert _changed(conv0, _convs(body)) == [], "stage 1 must not touch the body's convolutions"
    assert _changed(bn0, _bns(body)), "batch-norm layers train in stage 1, as fastai's train_bn does"
    assert any(not torch.equal(head0[k], v) for k, v in head.state_dict().items()), "stage 1 must train the head"
    conv1 = _convs(body)
    train_two_stage(learn, freeze_epochs=0, epochs=1, lr=1e-2)
    assert len(_changed(conv1, _convs(body))) == len(conv1), "stage 2 must train every body convolution"

def test_pretrained_stage1_leaves_the_whole_body_alone(small_dls):
    "With a pretrained body (flagged here on random weights, for speed) stage 1 keeps its batch norm frozen too."
    learn = pets_learner(small_dls, 'resnet18', pretrained=False)
    learn.pretrained = True
    body = learn.model[0]
    state = {k: v.clone() for k, v in body.state_dict().items()}
    run = train_two_stage(learn, freeze_epochs=1, epochs=0, lr=1e-2)
    assert [k for k, v in body.state_dict().items() if not torch.equal(state[k], v)] == []   # running stats too
    assert run['stages'][0]['train_bn'] is False

def test_from_scratch_is_frozen_for_stage1_even_though_fastai_does_not(small_dls):
    learn = pets_learner(small_dls, 'resnet18', pretrained=False)
    assert learn.model[0][0].weight.requires_grad          # fastai leaves a from-scratch learner unfrozen
    seen = []
    from fastai.callback.core import Callback
    class Spy(Callback):
        def before_fit(self): seen.append(self.learn.model[0][0].weight.requires_grad)
    learn.add_cb(Spy())
    train_two_stage(learn, freeze_epochs=1, epochs=1, lr=1e-3)
    assert seen == [False, True]

def test_lr_find_supplies_the_stage1_rate(small_dls, tmp_path):
    learn = pets_learner(small_dls, 'resnet18', pretrained=False)
    run = train_two_stage(learn, freeze_epochs=1, epochs=0, lr_find_fname=tmp_path/'lr.png', lr_find_its=15)
    assert set(run['lr_find']) == {'valley', 'minimum', 'steep'}
    assert run['lr'] == run['lr_find']['valley'] > 0
    assert (tmp_path/'lr.png').read_bytes()[:4] == b'\x89PNG'

def test_learnable_task_ends_below_chance(synthetic_pets):
    """Colour-coded breeds, trained from scratch. Small batches give enough steps for the batch-norm
    running statistics to settle; with only ~10 steps validation runs on unsettled statistics."""
    dls = pets_dataloaders(synthetic_pets, bs=4, item_size=48, size=48, num_workers=0)
    learn = pets_learner(dls, 'resnet18', pretrained=False)
    with learn.no_bar(): run = train_two_stage(learn, freeze_epochs=2, epochs=2, lr=1e-2)
    chance = 1 - 1/len(dls.vocab)                           # 0.75 for 4 classes
    assert run['epochs'][-1]['error_rate'] < chance / 3, run['epochs']
    assert [r['stage'] for r in run['epochs']] == [1, 1, 2, 2]
    assert all(r['seconds'] > 0 for r in run['epochs'])

def _one_frozen_epoch(sample_dir, pretrained):
    dls = pets_dataloaders(sample_dir, bs=32, item_size=192, size=160, num_workers=0)
    learn = pets_learner(dls, 'efficientnet_lite0', pretrained=pretrained)
    with learn.no_bar(), learn.no_logging():
        run = train_two_stage(learn, freeze_epochs=1, epochs=0, lr=3e-3)
    return run['epochs'][-1]['error_rate']

def test_real_transfer_from_imagenet(sample_dir):
    """One stage-1 epoch on the real sample with the body frozen: genuine ImageNet features
    (EfficientNet-Lite0 from PyPI) separate the three breeds; the same run from random weights cannot.
    Measured here on the 16 validation photos of the 81: pretrained 0.0, random 0.75 (chance 0.67), 3 runs."""
    pre, rand = _one_frozen_epoch(sample_dir, True), _one_frozen_epoch(sample_dir, False)
    assert pre < 0.2, pre
    assert rand > 0.4, rand
    assert rand - pre > 0.3

def test_missing_torchvision_weights_say_where_to_put_them(offline, small_dls):
    with pytest.raises(WeightsNotFound) as e: pets_learner(small_dls, 'resnet50', pretrained=True)
    msg = str(e.value)
    assert 'resnet50-11ad3fa6.pth' in msg and str(offline/'hub'/'checkpoints') in msg
    assert 'pretrained=False' in msg and '--no_pretrained' in msg

def test_cached_torchvision_weights_are_used_without_network(offline, small_dls):
    "A weights file placed where the error says is picked up (here: resnet18 weights we make ourselves)."
    import torchvision
    w = torchvision.models.ResNet18_Weights.DEFAULT
    dest = offline/'hub'/'checkpoints'/Path(w.url).name
    dest.parent.mkdir(parents=True)
    ref = torchvision.models.resnet18()
    torch.save(ref.state_dict(), dest)
    assert ensure_weights('resnet18') == dest
    learn = pets_learner(small_dls, 'resnet18', pretrained=True)
    assert torch.equal(learn.model[0][0].weight, ref.conv1.weight)
