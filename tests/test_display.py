"""e2e-display: a jet's image channels and graph as a picture of the expected size, chosen by index or by score;
bad choices are one line."""

from __future__ import annotations

import matplotlib.image
import pytest
from conftest import REPO, SAMPLE, read_events, write_hits

from e2e.cli.display import main as display_main
from frameproducers.display import DPI, FIGSIZE

SIZE = (int(FIGSIZE[1] * DPI), int(FIGSIZE[0] * DPI))  # rows, columns of the PNG


def test_display_by_index_writes_the_picture(tmp_path, capsys) -> None:
    out = tmp_path / "jet.png"
    assert display_main([str(SAMPLE), "--entry", "3", "--jet", "0", "-o", str(out)]) == 0
    assert matplotlib.image.imread(str(out)).shape[:2] == SIZE
    said = capsys.readouterr().out
    assert "event 1:1:4, jet 0" in said and "image channels and graph" in said
    # one producer only, coloured by a feature
    only_graph = tmp_path / "graph.yaml"
    only_graph.write_text("modules:\n  g: {type: HitGraphProducer, window: 33, k: 4}\n")
    assert display_main([str(SAMPLE), "--entry", "3", "--config", str(only_graph), "--node-colour", "log_e",
                         "-o", str(tmp_path / "g.png")]) == 0  # fmt: skip
    assert "graph ->" in capsys.readouterr().out
    only_frames = tmp_path / "frames.yaml"  # no graph to colour: the option is refused, not ignored
    only_frames.write_text("modules:\n  f: {type: JetFrameProducer}\n")
    rc = display_main([str(SAMPLE), "--entry", "3", "--config", str(only_frames), "--node-colour", "log_e",
                       "-o", str(tmp_path / "f.png")])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and "--node-colour log_e: the configuration draws no graph" in err and err.count("\n") == 1


@pytest.fixture(scope="module")
def tagged(tmp_path_factory):
    pytest.importorskip("onnxruntime")
    out = tmp_path_factory.mktemp("display") / "tagged.root"
    config = REPO / "process_configs" / "tau_gnn.yaml"
    from e2e.cli.run import main as run_main

    assert run_main([str(config), "-i", str(SAMPLE), "-o", str(out), "-n", "40", "--no-progress"]) == 0
    return out


def test_display_by_score(tmp_path, tagged, capsys) -> None:
    import awkward as ak
    import numpy as np
    import uproot

    with uproot.open(tagged) as f:
        score = f["Events"]["Jet_tauGNN_tau"].array()
    with uproot.open(SAMPLE) as f:
        label = f["Events"]["Jet_label"].array(entry_stop=40)
    flat, lab = ak.to_numpy(ak.flatten(score)), ak.to_numpy(ak.flatten(label))
    lowest_qcd = float(np.min(flat[lab == 0]))
    capsys.readouterr()
    out = tmp_path / "fake.png"
    args = [str(SAMPLE), "--tagged", str(tagged), "--score", "Jet_tauGNN_tau", "--label", "qcd", "--rank", "-1"]
    assert display_main([*args, "-o", str(out)]) == 0
    said = capsys.readouterr().out
    assert "truth qcd" in said and f"Jet_tauGNN_tau = {lowest_qcd:.4f}" in said
    assert matplotlib.image.imread(str(out)).shape[:2] == SIZE


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "choose a jet: --entry N"),
        (["--entry", "150"], "--entry 150: "),
        (["--entry", "0", "--jet", "40"], "--jet 40: entry 0 has"),
        (["--tagged", "TAGGED", "--score", "Jet_nope"], "no branch Jet_nope (score branches: "),
        (["--tagged", "TAGGED"], "--tagged needs --score"),
        (["--tagged", "TAGGED", "--score", "Jet_tauGNN_tau", "--rank", "5000"], "--rank 5000: "),
        (["--entry", "0", "-o", "x.unknown"], "unknown plot format"),
        (["--tagged", "TAGGED", "--score", "nJet"], "branch nJet is 40 * int32, expected one number per jet"),
        (["--tagged", "DAMAGED", "--score", "Jet_tauGNN_tau"], "damaged.root:Events: cannot read the tree data ("),
    ],
)
def test_bad_choices_are_one_line(tmp_path, tagged, capsys, extra, message) -> None:
    if "DAMAGED" in extra:  # the score's basket with flipped bytes (was uproot's traceback)
        import uproot

        with uproot.open(tagged) as f:
            at = int(f["Events"]["Jet_tauGNN_tau"].member("fBasketSeek")[0]) + 80
        data = bytearray(tagged.read_bytes())
        data[at : at + 300] = bytes(b ^ 0x55 for b in data[at : at + 300])
        (tmp_path / "damaged.root").write_bytes(bytes(data))
    extra = [str(tagged) if a == "TAGGED" else str(tmp_path / "damaged.root") if a == "DAMAGED" else a for a in extra]
    out = [] if "-o" in extra else ["-o", str(tmp_path / "x.png")]
    rc = display_main([str(SAMPLE), *extra, *out])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and message in err, err


def test_a_tagged_file_of_other_events_is_refused(tmp_path, tagged, capsys) -> None:
    """--tagged of other events than the hits file: one line naming both event ids (or the missing entry)."""
    import awkward as ak

    other = write_hits(tmp_path / "other.root", read_events(SAMPLE, 80)[40:])  # 40 events, other ids
    short = write_hits(tmp_path / "short.root", read_events(SAMPLE, 3))
    ev = read_events(SAMPLE, 40)
    no_jets = {f: (ev[f][:, :0] if f.startswith("Jet_") else ev[f]) for f in ev.fields if f != "nJet"}
    jetless = write_hits(tmp_path / "jetless.root", ak.Array(no_jets))  # the same ids, no jets: not --jet's fault
    for hits, message in (
        (other, "(run:lumi:event; give the hits file it was made from)"),
        (short, "beyond"),
        (jetless, "which the hits file's entry has not (0 jet(s))"),
    ):
        rc = display_main(
            [str(hits), "--tagged", str(tagged), "--score", "Jet_tauGNN_tau", "-o", str(tmp_path / "x.png")]
        )
        err = capsys.readouterr().err
        assert rc == 2 and err.count("\n") == 1 and "is not a tagged file of" in err and message in err, err
