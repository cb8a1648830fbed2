"""Interoperability of gomp's Listener/Client with the stdlib's, in both
directions, with and without an authkey, exchanging objects and bytes both
ways: against the stdlib of the Python running the tests and of every other
Python 3 installed under /root/.pyenv/versions (Python 3.12 changed the
handshake: 3.12+ challenges name a digest, older ones are HMAC-MD5 only).

The stdlib peer runs in a subprocess of that Python, with no gomp alias (the
GOMP_AS_MULTIPROCESSING variable removed). gomp is the side in this process.
"""

import ast
import glob
import os
import subprocess
import sys

import pytest

import gomp.connection as gconn
from conftest import HANG_GUARD, Background
from gomp import AuthenticationError

KEY = b'interop key \x00\xff'

# The stdlib side. Runs on Python 3.6+ (no syntax newer than that).
PEER = r'''
import sys, multiprocessing.connection as mc
from multiprocessing import AuthenticationError
role, arg, key = sys.argv[1], sys.argv[2], sys.argv[3]
key = None if key == '-' else bytes.fromhex(key)
me = 'stdlib %d.%d' % sys.version_info[:2]

def serve_one(c):
    # The replying side: an object, bytes, then an exchange it starts.
    obj = c.recv()
    c.send(('ack', me, obj))
    data = c.recv_bytes()
    c.send_bytes(data[::-1])
    c.send({'from': me, 'blob': bytes(range(256)) * 50})
    back = c.recv()
    assert back == ['echo', {'from': me, 'blob': bytes(range(256)) * 50}], back

def client_one(c, peer):
    c.send({'n': 1, 'data': [1.5, 'x', b'\x00\xff', None], 'from': me})
    assert c.recv() == ('ack', peer, {'n': 1, 'data': [1.5, 'x', b'\x00\xff', None], 'from': me})
    data = bytes(range(256)) * 40
    c.send_bytes(data)
    assert c.recv_bytes() == data[::-1]
    c.send(['echo', c.recv()])

try:
    if role == 'serve':
        family = arg
        with mc.Listener(family=family, authkey=key) as l:
            print(repr(l.address), flush=True)
            while True:
                try:
                    c = l.accept()
                except AuthenticationError as e:
                    print('AUTHFAIL', flush=True)
                    continue
                try:
                    if c.recv_bytes() == b'quit':
                        break
                    serve_one(c)
                finally:
                    c.close()
        print('DONE', flush=True)
    else:
        address = eval(arg)
        try:
            c = mc.Client(address, authkey=key)
        except AuthenticationError:
            print('AUTHFAIL', flush=True)
            sys.exit(0)
        with c:
            c.send_bytes(b'start')
            client_one(c, 'gomp')
        print('DONE', flush=True)
except Exception as e:
    print('ERROR %r' % (e,), flush=True)
    raise
'''


def interpreters():
    """(label, executable) of the stdlib peers: the host Python first."""
    base = getattr(sys, '_base_executable', sys.executable)
    found = [('host %d.%d' % sys.version_info[:2], base)]
    seen = {os.path.realpath(base)}
    for exe in sorted(glob.glob('/root/.pyenv/versions/3.*/bin/python3')):
        real = os.path.realpath(exe)
        if real in seen:
            continue
        seen.add(real)
        version = os.path.basename(os.path.dirname(os.path.dirname(exe)))
        found.append((version, exe))
    return found


INTERPRETERS = interpreters()


def peer_version(exe):
    out = subprocess.run(
        [exe, '-c', 'import sys; print("%d.%d" % sys.version_info[:2])'],
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
        env=peer_env(),
    )
    return out.stdout.strip()


def peer_env():
    env = dict(os.environ)
    env.pop('GOMP_AS_MULTIPROCESSING', None)
    env.pop('PYTHONPATH', None)
    return env


def start_peer(exe, role, arg, key):
    return subprocess.Popen(
        [exe, '-c', PEER, role, arg, key.hex() if key is not None else '-'],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=peer_env(),
    )


def finish(p):
    try:
        out, err = p.communicate(timeout=HANG_GUARD)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        pytest.fail('stdlib peer hung; stderr:\n' + err)
    return out.split('\n'), err


def gomp_serves(c, peer):
    """The replying side of the exchange, on a gomp connection."""
    assert c.recv_bytes() == b'start'
    obj = c.recv()
    assert obj['from'] == peer
    c.send(('ack', 'gomp', obj))
    data = c.recv_bytes()
    c.send_bytes(data[::-1])
    sent = {'from': 'gomp', 'blob': bytes(range(256)) * 50}
    c.send(sent)
    assert c.recv() == ['echo', sent]


def gomp_client(c, peer):
    """The initiating side of the exchange, on a gomp connection."""
    c.send_bytes(b'go')
    obj = {'n': 1, 'data': [1.5, 'x', b'\x00\xff', None], 'from': 'gomp'}
    c.send(obj)
    assert c.recv() == ('ack', peer, obj)
    data = bytes(range(256)) * 40
    c.send_bytes(data)
    assert c.recv_bytes() == data[::-1]
    c.send(['echo', c.recv()])


@pytest.fixture(params=INTERPRETERS, ids=[label for label, _ in INTERPRETERS])
def stdlib_python(request):
    label, exe = request.param
    version = peer_version(exe)
    if not version:
        pytest.skip('%s does not run here' % exe)
    return exe, 'stdlib ' + version


@pytest.mark.parametrize('family', ['AF_UNIX', 'AF_INET'])
@pytest.mark.parametrize('key', [KEY, None], ids=['authkey', 'no authkey'])
def test_gomp_listener_stdlib_client(stdlib_python, family, key):
    exe, peer = stdlib_python
    with gconn.Listener(family=family, authkey=key) as l:
        p = start_peer(exe, 'connect', repr(l.address), key)
        try:
            accepted = Background(l.accept)
            with accepted.result() as c:
                gomp_serves(c, peer)
        finally:
            out, err = finish(p)
        assert 'DONE' in out, err


@pytest.mark.parametrize('family', ['AF_UNIX', 'AF_INET'])
@pytest.mark.parametrize('key', [KEY, None], ids=['authkey', 'no authkey'])
def test_stdlib_listener_gomp_client(stdlib_python, family, key):
    exe, peer = stdlib_python
    p = start_peer(exe, 'serve', family, key)
    try:
        address = ast.literal_eval(p.stdout.readline())
        with gconn.Client(address, authkey=key) as c:
            gomp_client(c, peer)
        with gconn.Client(address, authkey=key) as c:
            c.send_bytes(b'quit')
    finally:
        out, err = finish(p)
    assert 'DONE' in out, err


def test_wrong_key_against_stdlib_client(stdlib_python):
    """Both sides fail with AuthenticationError; the gomp listener then
    serves a stdlib client that has the right key."""
    exe, peer = stdlib_python
    with gconn.Listener(authkey=KEY) as l:
        p = start_peer(exe, 'connect', repr(l.address), b'some other key')
        try:
            with pytest.raises(AuthenticationError):
                Background(l.accept).result()
        finally:
            out, err = finish(p)
        assert 'AUTHFAIL' in out, err
        p = start_peer(exe, 'connect', repr(l.address), KEY)
        try:
            with Background(l.accept).result() as c:
                gomp_serves(c, peer)
        finally:
            out, err = finish(p)
        assert 'DONE' in out, err


def test_wrong_key_against_stdlib_listener(stdlib_python):
    exe, peer = stdlib_python
    p = start_peer(exe, 'serve', 'AF_UNIX', KEY)
    try:
        address = ast.literal_eval(p.stdout.readline())
        with pytest.raises(AuthenticationError):
            gconn.Client(address, authkey=b'some other key')
        assert p.stdout.readline().strip() == 'AUTHFAIL'
        with gconn.Client(address, authkey=KEY) as c:
            gomp_client(c, peer)
        with gconn.Client(address, authkey=KEY) as c:
            c.send_bytes(b'quit')
    finally:
        out, err = finish(p)
    assert 'DONE' in out, err
