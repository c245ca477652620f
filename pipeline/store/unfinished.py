"""The videos of a store that readers leave out because they are not complete: being written by
another run, abandoned by an interrupted or failed one, or with metadata that cannot be read. Training
and prediction name them, with why, instead of using only the complete videos without a word."""

from __future__ import annotations

from sal3d.pipeline.store.feature_store import FeatureStore


def unfinished_videos(store: FeatureStore, video_ids: list[str] | None = None,
                      complete: dict | None = None) -> dict[str, str]:
    """{video id: why it is not complete}, sorted by id, for the videos of `store` (or of `video_ids`, ids
    absent from the store skipped) that `store.complete_videos()` leaves out; `FeatureStore.state` says
    why, e.g. "being written by another run (pid 123 on host, ...)". One record read per such video.
    complete: `store.complete_videos()` when the caller has it already (it is not listed again)."""
    complete = store.complete_videos() if complete is None else complete
    listed = store.listed_ids() if video_ids is None else sorted(set(video_ids))
    found = {}
    for video_id in listed:
        if video_id in complete:
            continue
        state, _, why = store.state(video_id)
        if state == "absent":
            continue
        why = why.removeprefix(f"{store.location}: video {video_id}: ")
        if state == "incomplete" and not why.startswith("incomplete"):
            why = f"incomplete: {why}"
        elif state == "complete":
            why = "completed after the store was listed"
        found[video_id] = why
    return found


def not_complete_yet(unfinished: dict[str, str], shown: int = 5) -> str:
    """The clause a refusal adds when videos are still being written or were left incomplete: "; 1
    incomplete, not used: 0002 (being written by another run (...)); let sal3d extract ...", or "" when
    there are none."""
    if not unfinished:
        return ""
    listed = ", ".join(f"{video} ({why})" for video, why in list(unfinished.items())[:shown])
    more = f" and {len(unfinished) - shown} more" if len(unfinished) > shown else ""
    return (f"; {len(unfinished)} incomplete, not used: {listed}{more}; let sal3d extract finish them (rerun it "
            "for interrupted ones)")
