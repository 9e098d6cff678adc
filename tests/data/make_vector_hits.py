"""Regenerate vector_hits.root: 6 events of the shipped sample written by real ROOT with std::vector<T>
branches and no counters (needs the optional ROOT extra: pip install -e .[root]). Run from the repo root."""

import ROOT, uproot, numpy as np
t = uproot.open("data/sample_tau_qcd.root")["Events"]
a = t.arrays(entry_stop=6, library="np")
ctype = {np.dtype("int16"): "short", np.dtype("float32"): "float", np.dtype("int8"): "char",
         np.dtype("uint8"): "unsigned char"}
f = ROOT.TFile("tests/data/vector_hits.root", "RECREATE", "", 404)
tree = ROOT.TTree("Events", "hits tree written by ROOT with std::vector branches (6 events of the sample)")
ids = {"run": np.zeros(1, np.uint32), "luminosityBlock": np.zeros(1, np.uint32), "event": np.zeros(1, np.uint64)}
tree.Branch("run", ids["run"], "run/i"); tree.Branch("luminosityBlock", ids["luminosityBlock"], "luminosityBlock/i")
tree.Branch("event", ids["event"], "event/l")
vecs = {}
for k in t.keys():
    if k in ids or k.startswith("n"): continue
    dt = a[k][0].dtype
    v = ROOT.std.vector(ctype[dt])()
    vecs[k] = (v, dt)
    tree.Branch(k, v)
for i in range(6):
    for k in ids: ids[k][0] = a[k][i]
    for k, (v, dt) in vecs.items():
        v.clear()
        for x in a[k][i]: v.push_back(int(x) if dt.kind in "iu" else float(x))
    tree.Fill()
tree.Write(); f.Close()
