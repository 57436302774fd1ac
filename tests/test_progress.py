"""progress.py: what the text log keeps of the event stream."""

from splatkit.events import StageProgress, TrainStep
from splatkit.progress import TextLog


def _log(tmp_path, events):
    log = TextLog(tmp_path / "log.txt", every=100)
    for e in events:
        log(e)
    log.close()
    return (tmp_path / "log.txt").read_text(encoding="utf-8").splitlines()


def test_every_phase_of_a_stage_is_logged(tmp_path):
    """SfM's four phases (features, matching, mapping, ...) each get a line: 84 s of matching on
    a 128-photo set must not look like a hang."""
    lines = _log(tmp_path, [StageProgress("sfm", i, 4, detail=d)
                            for i, d in enumerate(["finding features", "matching", "placing cameras"])])
    assert [line.split(" ", 1)[1] for line in lines] == [
        "[sfm] 0/4 finding features", "[sfm] 1/4 matching", "[sfm] 2/4 placing cameras"]


def test_counting_progress_is_thinned_to_every_tenth_and_the_end(tmp_path):
    lines = _log(tmp_path, [StageProgress("sfm", i, 25, detail="placing cameras") for i in range(1, 26)])
    assert [line.split()[2] for line in lines] == ["10/25", "20/25", "25/25"]


def test_training_lines_every_n_steps_and_the_last(tmp_path):
    events = [TrainStep(step=s, total_steps=250, loss=0.1, num_splats=10,
                        eta_seconds=1.0, seconds_per_step=0.1)
              for s in range(1, 251)]
    lines = _log(tmp_path, events)
    assert [line.split()[3] for line in lines] == ["100/250", "200/250", "250/250"]
