"""The suite runs offline wherever it runs: conftest's `no_network` fixture blocks every connection to another
machine, in the test process and in the Python subprocesses it starts; this machine's own addresses stay open
(the Voila server, the docs' HTTP server). So the offline error paths are what the tests see, with or without
internet."""
import os, socket, subprocess, sys, threading, time, urllib.error, urllib.request
import pytest, torch
from conftest import NetworkBlocked, NO_NETWORK_ENV, netguard

REMOTE = [('192.0.2.1', 443), ('93.184.216.34', 80), ('example.com', 443), ('2001:db8::1', 443),
          ('download.pytorch.org', 443)]

@pytest.mark.parametrize('address', REMOTE)
def test_a_connection_to_another_machine_raises_at_once(address):
    t = time.monotonic()
    family = socket.AF_INET6 if ':' in address[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(30)
        with pytest.raises(NetworkBlocked, match='network blocked'): s.connect(address)
        with pytest.raises(NetworkBlocked): s.connect_ex(address)
    with pytest.raises(NetworkBlocked): socket.create_connection(address, timeout=30)
    assert time.monotonic() - t < 5, "refused at once, not after a timeout"

def test_name_lookups_of_other_machines_are_blocked():
    for host in ('example.com', 'pypi.org', b'huggingface.co'):
        with pytest.raises(NetworkBlocked, match='name lookup'): socket.getaddrinfo(host, 443)
    assert socket.getaddrinfo('localhost', 80)       # this machine's names still resolve
    assert socket.getaddrinfo('127.0.0.1', 80)
    assert socket.getaddrinfo(None, 80)

def test_it_is_an_oserror_so_clients_report_a_failed_download():
    assert issubclass(NetworkBlocked, OSError)
    with pytest.raises(urllib.error.URLError) as e: urllib.request.urlopen('https://download.pytorch.org/models/x.pth', timeout=30)
    assert isinstance(e.value.reason, NetworkBlocked)
    with pytest.raises(Exception) as e:
        torch.hub.download_url_to_file('https://download.pytorch.org/models/resnet18-f37072fd.pth', os.devnull, progress=False)
    assert 'network blocked' in str(e.value)

@pytest.mark.parametrize('host', ['127.0.0.1', 'localhost', '::1'])
def test_loopback_stays_open(host):
    family = socket.AF_INET6 if host == '::1' else socket.AF_INET
    try: srv = socket.socket(family, socket.SOCK_STREAM)
    except OSError: pytest.skip('no IPv6 here')
    with srv:
        try: srv.bind(('::1' if host == '::1' else '127.0.0.1', 0))
        except OSError: pytest.skip(f'{host} is not available here')
        srv.listen(1)
        port = srv.getsockname()[1]
        threading.Thread(target=lambda: srv.accept()[0].sendall(b'hi'), daemon=True).start()
        with socket.create_connection((host, port), timeout=10) as c: assert c.recv(2) == b'hi'

def test_unix_sockets_are_not_the_network(tmp_path):
    a, b = socket.socketpair()
    with a, b: a.sendall(b'x'); assert b.recv(1) == b'x'
    path = str(tmp_path/'s')
    with socket.socket(socket.AF_UNIX) as srv:
        srv.bind(path); srv.listen(1)
        with socket.socket(socket.AF_UNIX) as c: c.connect(path)

def test_python_subprocesses_are_blocked_too():
    code = ("import socket\ntry: socket.create_connection(('192.0.2.1', 443), timeout=30)\n"
            "except OSError as e: print(type(e).__name__, e)\n")
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith('NetworkBlocked network blocked in the tests'), r.stdout
    assert os.environ[NO_NETWORK_ENV] == '1'

def test_the_guard_is_installed():
    assert socket.socket.connect is netguard._connect and socket.getaddrinfo is netguard._getaddrinfo

@pytest.mark.network
def test_a_network_test_runs_without_the_guard():
    "Marked `network`: the real socket functions, and subprocesses without the guard (nothing is contacted here)."
    assert socket.socket.connect is not netguard._connect and socket.getaddrinfo is not netguard._getaddrinfo
    assert NO_NETWORK_ENV not in os.environ

def test_the_guard_is_back_after_a_network_test():
    assert socket.socket.connect is netguard._connect and os.environ[NO_NETWORK_ENV] == '1'
