"PredictWidget driven from Python, with uploads shaped exactly as the browser sends them."
import datetime, json, re, shutil
import pytest
from pet_breeds.inference import load_model
from pet_breeds.widget import PredictWidget

def browser_file(data:bytes, name:str, type:str='image/jpeg') -> dict:
    "One file of a FileUpload sync message, as ipywidgets 8's JavaScript sends it (bytes arrive as a memoryview)."
    return {'name': name, 'type': type, 'size': len(data), 'content': memoryview(data), 'last_modified': 1767225600000}

def kernel_file(data:bytes, name:str, type:str='image/jpeg') -> dict:
    "The same file as `FileUpload.value` holds it in the kernel once deserialized."
    return {'name': name, 'type': type, 'size': len(data), 'content': memoryview(data),
            'last_modified': datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)}

def labels(html:str) -> list: return re.findall(r'<td class="pb-label">([^<]*)</td>', html)

@pytest.fixture(scope='module')
def pm(tiny_model): return load_model(tiny_model[0])

def test_upload_errors_and_recovery(tiny_model, pm, sample_dir):
    w = PredictWidget(tiny_model[0], max_bytes=200_000)  # a model folder, as pet_breeds_app passes it
    jpg = (sample_dir/'Abyssinian_1.jpg').read_bytes()
    expected = pm.predict(jpg)[0][0]
    assert expected in pm.vocab

    # a browser upload, through the same deserialisation as a comm message
    w.upload.set_state({'value': [browser_file(jpg, 'Abyssinian_1.jpg')]})
    assert w.count.value == 'processed: 1'
    assert w.upload.value == ()  # reset, so the same file can be picked again
    (res,) = w.results.children
    assert res._dom_classes == ('pb-result',)
    assert 'Abyssinian_1.jpg' in res.value
    assert labels(res.value)[0] == expected and len(labels(res.value)) == 3
    assert res.value.count('class="pb-row"') == 3
    assert re.search(r'class="pb-time">predicted in \d+(\.\d+)? m?s<', res.value), res.value
    assert w.last[0]['top'] == pm.predict(jpg)

    # the bad files, one upload each: the message names the file, nothing raises
    bad = [(b'plain text, not a picture', 'notes.txt', 'not an image file'),
           (jpg[:len(jpg)//3], 'truncated.jpg', 'unreadable image (image file is truncated'),
           (jpg + b'\0' * 200_000, 'huge.jpg', 'file too large')]
    for data, name, problem in bad:
        w.upload.value = (kernel_file(data, name),)
        err = w.results.children[0]
        assert err._dom_classes == ('pb-error',), err.value
        assert f'{name}: {problem}' in err.value, err.value
        assert w.upload.value == ()
    assert w.count.value == 'processed: 4'

    # the widget still works, with the very same file again
    w.upload.value = (kernel_file(jpg, 'Abyssinian_1.jpg'),)
    assert w.count.value == 'processed: 5'
    assert w.results.children[0]._dom_classes == ('pb-result',)
    assert labels(w.results.children[0].value)[0] == expected
    assert [c._dom_classes[0] for c in w.results.children] == ['pb-result', 'pb-error', 'pb-error', 'pb-error', 'pb-result']

def test_several_files(pm, sample_dir):
    w = PredictWidget(pm)
    names = ['Bengal_1.jpg', 'american_bulldog_100.jpg', 'Abyssinian_10.jpg']
    files = [browser_file((sample_dir/n).read_bytes(), n) for n in names]
    files.insert(1, browser_file(b'\x89PNG\r\n\x1a\n broken', 'broken.png', 'image/png'))
    w.upload.set_state({'value': files})
    assert w.count.value == 'processed: 4'
    kids = w.results.children
    assert [c._dom_classes[0] for c in kids] == ['pb-result', 'pb-error', 'pb-result', 'pb-result']
    assert 'broken.png: ' in kids[1].value
    for c, n in zip([kids[0], *kids[2:]], names):
        assert n in c.value
        assert labels(c.value)[0] == pm.predict(sample_dir/n)[0][0]
    assert w.status.value == 'Done: 4 files, 1 not predicted.'

def test_failure_inside_the_model_is_shown(pm, sample_dir, monkeypatch):
    w = PredictWidget(pm)
    def boom(*a, **k): raise RuntimeError('CUDA out of memory')
    monkeypatch.setattr(pm, 'probs', boom)
    jpg = (sample_dir/'Bengal_1.jpg').read_bytes()
    w.upload.value = (kernel_file(jpg, 'Bengal_1.jpg'),)
    assert 'Bengal_1.jpg: prediction failed (RuntimeError: CUDA out of memory)' in w.results.children[0].value
    monkeypatch.undo()
    w.upload.value = (kernel_file(jpg, 'Bengal_1.jpg'),)
    assert w.results.children[0]._dom_classes == ('pb-result',)

def test_the_page_speaks_of_the_models_own_classes(tiny_model, pm, sample_dir, tmp_path):
    "A model trained on class folders (cats/, dogs/, ...) shows those classes and no word of breeds or pets (issue 29)."
    model = tmp_path/'model'
    shutil.copytree(tiny_model[0], model)
    meta = json.loads((model/'model.json').read_text())
    (model/'model.json').write_text(json.dumps({**meta, 'vocab': ['cats', 'dogs', 'Füchse & Co']}))
    w = PredictWidget(model)
    page = w.children[0].value.split('</style>')[1] + w.status.value   # the page's words, less its CSS
    assert not re.search('breed|pet|cats or dogs', page, re.IGNORECASE), page
    assert '<span class="pb-classes">cats, dogs, Füchse &amp; Co</span>' in page, page
    w.upload.set_state({'value': [browser_file((sample_dir/'Bengal_1.jpg').read_bytes(), 'photo.jpg')]})
    assert sorted(labels(w.results.children[0].value)) == ['Füchse &amp; Co', 'cats', 'dogs']
    pets = PredictWidget(pm).children[0].value   # a PETS model's page is about pets
    assert '<h3 class="pb-title">Pet breeds</h3>' in pets and 'Abyssinian, Bengal, american_bulldog' in pets
