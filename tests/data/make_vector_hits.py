"""Regenerate vector_hits.root: 6 events of the shipped sample written by real ROOT with std::vector<T>
branches and no counters (needs the optional ROOT extra: pip install -e .[root]). Run from the repo root."""

import numpy as np
import ROOT
import uproot

N = 6
tree_in = uproot.open("data/sample_tau_qcd.root")["Events"]
arrays = tree_in.arrays(entry_stop=N, library="np")
C_TYPE = {
    np.dtype("int16"): "short",
    np.dtype("float32"): "float",
    np.dtype("int8"): "char",
    np.dtype("uint8"): "unsigned char",
}

f = ROOT.TFile("tests/data/vector_hits.root", "RECREATE", "", 404)  # 404: LZ4 level 4
tree = ROOT.TTree("Events", "hits tree written by ROOT with std::vector branches (6 events of the sample)")
ids = {"run": np.zeros(1, np.uint32), "luminosityBlock": np.zeros(1, np.uint32), "event": np.zeros(1, np.uint64)}
tree.Branch("run", ids["run"], "run/i")
tree.Branch("luminosityBlock", ids["luminosityBlock"], "luminosityBlock/i")
tree.Branch("event", ids["event"], "event/l")
vectors = {}
for name in tree_in.keys():
    if name in ids or name.startswith("n"):
        continue  # no counters: ROOT vectors carry their own sizes
    dtype = arrays[name][0].dtype
    vectors[name] = (ROOT.std.vector(C_TYPE[dtype])(), dtype)
    tree.Branch(name, vectors[name][0])
for i in range(N):
    for name in ids:
        ids[name][0] = arrays[name][i]
    for name, (vec, dtype) in vectors.items():
        vec.clear()
        for value in arrays[name][i]:
            vec.push_back(int(value) if dtype.kind in "iu" else float(value))
    tree.Fill()
tree.Write()
f.Close()
