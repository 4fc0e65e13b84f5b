"""The local stage alone on the dev corpus at 998 works (benchmarks/detection.py's padding): the visual words'
shortlist beside the learned vectors' of 10 / 20 / 40 works, with 0 / 1 / 2 of the vectors' best verified whatever
the keypoints' votes (docs/measurements.md, session 22). Only the copies and distractors the global stage does not
match are run; each configuration reports copies found, p50 ms with the copy's fingerprints computed beforehand, and
distractors matched, then which copies each finds that the words do not, and the reverse.

    vector_shortlist.py DEV_CORPUS WORK_DIR     (WORK_DIR keeps the registered ledger between runs)"""
import sys, json, os, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import numpy as np
import detection, provenance
from provenance import vectorindex, localindex, local
from provenance.ledger import Ledger
from provenance.imaging import decode
from provenance.index import open_index, Index
from provenance.fingerprints import fingerprint_decoded
from provenance.matching import find_matches
from provenance._parallel import imap
from eth_account import Account
D, W = Path(sys.argv[1]), Path(sys.argv[2])
sys.argv = sys.argv[:1]
truth = json.load(open(D / 'truth.json'))
if not (W / 'ledger.db').exists():
    (W / 'padding').mkdir(parents=True, exist_ok=True)
    list(imap(detection._write_padding, [(i, W / 'padding') for i in range(1000 - 142)]))
    with Ledger.create(W / 'ledger.db') as led:
        list(provenance.register(led, sorted((D / 'works').iterdir()) + [W / 'padding'],
                                 Account.from_key('0x' + '11' * 32), artist='b').results)
led = Ledger.open(W / 'ledger.db')
work_of = {w.title: w.id for w in led.works()}
index = open_index(led)
todo = []
for f, t in sorted(truth.items()):
    if not t['work']: continue
    im = decode((D / 'feed' / f).read_bytes())
    fps = fingerprint_decoded((D / 'feed' / f).read_bytes(), im, variants=True, local_features=False)
    if find_matches(fps, index): continue
    todo.append((f, t['attack'], work_of.get(t['work']), im.image))
print(len(todo), 'copies reach the local stage')
vi = vectorindex.open_vectors(led); wi = localindex.open_local(led)
res = {}
dis = []
for f, t in sorted(truth.items()):
    if t['work']: continue
    im = decode((D / 'feed' / f).read_bytes())
    fps = fingerprint_decoded((D / 'feed' / f).read_bytes(), im, variants=True, local_features=False)
    if not find_matches(fps, index): dis.append((f, 'distractor', None, im.image))
print(len(dis), 'distractors reach the local stage')
for name, bounded, k, pf in (('words', wi, None, 0), ('v10p0', vi, 10, 0), ('v10p1', vi, 10, 1), ('v10p2', vi, 10, 2),
                              ('v20p1', vi, 20, 1), ('v40p0', vi, 40, 0)):
    if k: vectorindex.SHORTLIST = k; vi.prefer = pf
    found, lat = set(), []
    for f, a, w, im in todo:
        q = local.Query(im); q.plain
        if name != 'words': vectorindex.copy_vectors(q)
        t = time.perf_counter(); got = [x for x, _ in bounded.match(q)]; lat.append(time.perf_counter() - t)
        if w in got: found.add(f)
    fpos = sum(bool(bounded.match(local.Query(im))) for _, _, _, im in dis)
    res[name] = found
    print(name, len(found), 'p50 ms %.1f' % (1000 * np.median(lat)), 'distractors matched', fpos, flush=True)
att = {f: a for f, a, _, _ in todo}
for name in ('v10p0', 'v10p1', 'v10p2', 'v20p1', 'v40p0'):
    print(name, 'missed vs words:', sorted((att[f], f) for f in res['words'] - res[name]),
          'extra:', sorted((att[f], f) for f in res[name] - res['words']))
