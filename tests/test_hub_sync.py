"""The Hub sync at the HfApi boundary: a Space restart, a second replica or an unreachable Hub must never lose a vote.

`FolderHub` plays the Hub: each repo is a local folder, every commit is logged with what it wrote. `StandInHfApi`
is a real `HfApi` (so `run_as_future`, which the real `CommitScheduler` uses, is the library's own) whose network
calls go to a `FolderHub`; each boot or replica gets its own client, as separate machines would. The scheduler is
huggingface_hub's CommitScheduler with a long interval; tests push with `HubSync.push_now()` (its `trigger()`).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
import time
from pathlib import Path

import datasets
import httpx
import pytest
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi
from huggingface_hub.errors import RepositoryNotFoundError
from huggingface_hub.hf_api import CommitInfo, RepoUrl

from app.data.exports import export_all
from app.data.hub_sync import start_hub_sync
from app.data.store import AnnotationStore

REPO = "lab/studio-votes"


class FolderHub:
    """The Hub's side: repos as folders, commits serialized per repo (as the Hub does) and logged."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.lock = threading.Lock()
        self.commits: list[dict] = []  # {"client", "writes": {path: sha256}, "deletes": [...]}

    def repo_dir(self, repo_id: str) -> Path:
        return self.root / repo_id

    def files(self, repo_id: str = REPO) -> list[str]:
        folder = self.repo_dir(repo_id)
        return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


class StandInHfApi(HfApi):
    """HfApi whose network calls (those the sync uses) read and write a FolderHub; `reachable` / `token_ok` turn
    the network or the credentials off. Every call is logged in `calls`."""

    def __init__(self, hub: FolderHub, name: str, *, reachable: bool = True, token_ok: bool = True) -> None:
        super().__init__(token="hf_stand_in")
        self.hub, self.name, self.reachable, self.token_ok = hub, name, reachable, token_ok
        self.calls: list[str] = []
        self.commit_delay_s = 0.0

    def _network(self, call: str) -> None:
        self.calls.append(call)
        if not self.reachable:
            raise httpx.ConnectError("[Errno 101] Network is unreachable")

    def _not_found(self, repo_id: str) -> RepositoryNotFoundError:
        request = httpx.Request("GET", f"https://huggingface.co/api/datasets/{repo_id}")
        return RepositoryNotFoundError("404 Repository Not Found", response=httpx.Response(404, request=request))

    def whoami(self, token=None, **kwargs):
        self._network("whoami")
        if not self.token_ok:
            raise self._not_found("whoami")  # the Hub answers a bad token with 401; any error will do here
        return {"name": "lab"}

    def create_repo(self, repo_id, *, token=None, private=None, repo_type=None, exist_ok=False, **kwargs):
        self._network("create_repo")
        with self.hub.lock:
            folder = self.hub.repo_dir(repo_id)
            if folder.exists() and not exist_ok:
                raise FileExistsError(repo_id)
            folder.mkdir(parents=True, exist_ok=True)
        return RepoUrl(f"https://huggingface.co/datasets/{repo_id}")

    def list_repo_files(self, repo_id, *, revision=None, repo_type=None, token=None):
        self._network("list_repo_files")
        if not self.token_ok or not self.hub.repo_dir(repo_id).is_dir():
            raise self._not_found(repo_id)
        with self.hub.lock:
            return self.hub.files(repo_id)

    def hf_hub_download(self, repo_id, filename, *, repo_type=None, local_dir=None, **kwargs):
        self._network(f"download {filename}")
        source = self.hub.repo_dir(repo_id) / filename
        if not source.is_file():
            raise FileNotFoundError(f"{filename} is not in {repo_id}")
        target = Path(local_dir) / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        return str(target)

    def create_commit(self, repo_id, operations, *, commit_message, repo_type=None, revision=None, **kwargs):
        self._network("create_commit")
        writes, deletes = {}, []
        payloads = []
        for operation in operations:
            if isinstance(operation, CommitOperationAdd):
                with operation.as_file() as handle:
                    payloads.append((operation.path_in_repo, handle.read()))
            elif isinstance(operation, CommitOperationDelete):
                deletes.append(operation.path_in_repo)
        with self.hub.lock:
            time.sleep(self.commit_delay_s)  # widen the window in which two replicas commit
            folder = self.hub.repo_dir(repo_id)
            for path, data in payloads:
                target = folder / path
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
                writes[path] = hashlib.sha256(data).hexdigest()
            for path in deletes:
                (folder / path).unlink(missing_ok=True)
            self.hub.commits.append({"client": self.name, "writes": writes, "deletes": deletes})
            number = len(self.hub.commits)
        return CommitInfo(
            commit_url=f"https://huggingface.co/datasets/{repo_id}/commit/{number:040x}",
            commit_message=commit_message,
            commit_description="",
            oid=f"{number:040x}",
        )


# ----------------------------------------------------------------------------------------------------------------


@pytest.fixture
def hub(tmp_path) -> FolderHub:
    return FolderHub(tmp_path / "hub")


def boot(hub: FolderHub, data_dir: Path, name: str, **api_options):
    """One start of the studio on `data_dir`: restore, then the real CommitScheduler (long interval)."""
    api = StandInHfApi(hub, name, **api_options)
    sync = start_hub_sync(data_dir, REPO, api=api, every_minutes=60, retry_minutes=None, boot_id=f"boot-{name}")
    if sync.scheduler is not None:
        sync.push_now()  # let the push the scheduler starts with run first, so later pushes are the tests' own
    return sync, api


def vote(data_dir: Path, text: str, video: Path | None = None) -> str:
    """One acknowledged vote, written the way the app writes it (its own store handle on the data dir)."""
    with AnnotationStore(data_dir) as store:
        return store.record_rating(
            model="embedded-default", question=f"What happens? ({text})", answer=text, thumbs=1, video_path=video
        )


def repo_ids(hub: FolderHub, tmp_path: Path) -> list[str]:
    """Every record id in the repo, read as one dataset the way `load_dataset(repo)` would (a folder copy)."""
    copy = tmp_path / f"repo-copy-{time.monotonic_ns()}"
    shutil.copytree(hub.repo_dir(REPO), copy)
    dataset = datasets.load_dataset(str(copy), split="train", cache_dir=str(tmp_path / "datasets-cache"))
    return list(dataset["id"])


def assert_append_only(hub: FolderHub) -> None:
    """No commit deleted anything or rewrote a path with other bytes than it held."""
    written: dict[str, str] = {}
    for commit in hub.commits:
        assert commit["deletes"] == [], f"{commit['client']} deleted {commit['deletes']}"
        for path, digest in commit["writes"].items():
            assert written.setdefault(path, digest) == digest, f"{commit['client']} overwrote {path}"


# ----------------------------------------------------------------------------------------------------------------


def test_a_restart_on_an_empty_disk_restores_every_vote_and_only_appends(hub, tmp_path, make_video):
    clip = make_video("cat.mp4", duration_s=1.0)
    disk_a = tmp_path / "boot-a"
    sync_a, _ = boot(hub, disk_a, "a")
    assert sync_a.state.phase == "syncing"
    votes_a = [vote(disk_a, "first", clip), vote(disk_a, "second"), vote(disk_a, "third", clip)]
    assert sync_a.push_now() is not None
    sync_a.stop()
    assert sync_a.state.on_hub == 3 and sync_a.state.pushes >= 1

    # The Space restarts: a new boot on a wiped disk.
    disk_b = tmp_path / "boot-b"
    sync_b, api_b = boot(hub, disk_b, "b")
    assert sync_b.state.phase == "syncing" and sync_b.state.restored == 3
    video_downloads = [call for call in api_b.calls if call.startswith("download videos/")]
    assert video_downloads == []  # the restore brought the records only
    with AnnotationStore(disk_b) as store_b:
        assert {r["id"] for r in store_b.records()} == set(votes_a)
        # The video comes down when the export needs it, byte for byte, once.
        exported = export_all(store_b, formats=("jsonl",), make_zip=False)
        video_path = store_b.get(votes_a[0])["video_path"]
        assert (exported.directory / video_path).read_bytes() == clip.read_bytes()
        assert [call for call in api_b.calls if call.startswith("download videos/")] == [f"download {video_path}"]
    votes_b = [vote(disk_b, "fourth"), vote(disk_b, "fifth", clip)]
    assert sync_b.push_now() is not None
    sync_b.stop()

    ids = repo_ids(hub, tmp_path)
    assert sorted(ids) == sorted(votes_a + votes_b)  # every acknowledged vote, each exactly once
    assert_append_only(hub)
    assert sum(path.startswith("videos/") for path in hub.files()) == 1  # the clip went up once

    # A third boot on B's (kept) disk: the restore is idempotent.
    sync_c, _ = boot(hub, disk_b, "c")
    assert sync_c.state.restored == 0 and sync_c.state.on_hub == 5
    assert sync_c.push_now() is None  # nothing new: no commit
    sync_c.stop()
    with AnnotationStore(disk_b) as store:
        assert store.counts()["total"] == 5


def test_two_replicas_pushing_at_once_keep_every_vote(hub, tmp_path):
    seed_dir = tmp_path / "seed"
    seed, _ = boot(hub, seed_dir, "seed")
    seeded = [vote(seed_dir, f"seed {i}") for i in range(3)]
    seed.push_now()
    seed.stop()

    replicas = {name: boot(hub, tmp_path / name, name) for name in ("r1", "r2")}
    for _, api in replicas.values():
        api.commit_delay_s = 0.02
    acknowledged = {name: [] for name in replicas}
    errors: list[BaseException] = []

    def work(name: str) -> None:
        try:
            sync, _ = replicas[name]
            for round_number in range(4):
                acknowledged[name] += [vote(tmp_path / name, f"{name} {round_number} {i}") for i in range(2)]
                sync.push_now()
        except BaseException as error:  # handed to the main thread, which fails the test with it
            errors.append(error)

    threads = [threading.Thread(target=work, args=(name,)) for name in replicas]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    for sync, _ in replicas.values():
        sync.stop()

    ids = repo_ids(hub, tmp_path)
    expected = seeded + acknowledged["r1"] + acknowledged["r2"]
    assert len(expected) == 19
    assert sorted(ids) == sorted(expected)
    assert_append_only(hub)
    # Each replica restored the seed votes, so both local stores (and their exports) hold them.
    for name in replicas:
        with AnnotationStore(tmp_path / name) as store:
            assert set(seeded) <= {r["id"] for r in store.records()}
    # The next boot sees both replicas' votes.
    late_dir = tmp_path / "late"
    late, _ = boot(hub, late_dir, "late")
    late.stop(final_push=False)
    with AnnotationStore(late_dir) as store:
        assert sorted(r["id"] for r in store.records()) == sorted(expected)


def test_a_restore_that_cannot_reach_the_hub_never_pushes(hub, tmp_path):
    first_dir = tmp_path / "first"
    first, _ = boot(hub, first_dir, "first")
    earlier = [vote(first_dir, "earlier")]
    first.push_now()
    first.stop()
    files_before, commits_before = hub.files(), len(hub.commits)

    disk = tmp_path / "offline-boot"
    sync, api = boot(hub, disk, "offline", reachable=False)
    state = sync.state
    assert state.phase == "paused" and not state.pushing and state.warning
    assert state.message.startswith("⚠️ Hub restore failed:") and "pushing is paused" in state.message
    assert "Network is unreachable" in state.message
    later = [vote(disk, "cast while offline")]  # the studio still serves and saves locally
    assert sync.push_now() is None
    assert sync.retry().phase == "paused"
    assert not any(call in ("create_repo", "create_commit") for call in api.calls)
    assert hub.files() == files_before and len(hub.commits) == commits_before

    # The Hub comes back: the retry restores first, then appends this boot's vote.
    api.reachable = True
    assert sync.retry().phase == "syncing"
    sync.push_now()
    sync.stop()
    assert sorted(repo_ids(hub, tmp_path)) == sorted(earlier + later)
    assert_append_only(hub)


def test_a_bad_token_pauses_pushing_instead_of_starting_a_new_repo(hub, tmp_path):
    sync, api = boot(hub, tmp_path / "data", "bad-token", token_ok=False)
    assert sync.state.phase == "paused" and "RepositoryNotFoundError" in sync.state.message
    vote(tmp_path / "data", "kept locally")
    assert sync.push_now() is None
    sync.stop()
    assert hub.commits == [] and "create_repo" not in api.calls


def test_offline_mode_serves_paused_without_contacting_the_hub(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    sync = start_hub_sync(tmp_path, REPO, token="hf_dummy")
    assert sync.state.phase == "paused" and "offline" in sync.state.message
    assert "pushing is paused" in sync.state.message
    assert sync.scheduler is None
    sync.stop()
    assert start_hub_sync(tmp_path, None, token="hf_dummy") is None  # no repo configured: sync off


def test_records_already_on_the_hub_twice_are_restored_and_exported_once(hub, tmp_path):
    source_dir = tmp_path / "source"
    source, _ = boot(hub, source_dir, "source")
    record_id = vote(source_dir, "pushed twice")
    source.push_now()
    source.stop()
    # A retried push from a shared disk put the same record in a second boot's shard; an old boot left the single
    # snapshot file of earlier versions, with one record nobody sharded yet.
    repo = hub.repo_dir(REPO)
    (shard,) = repo.glob("records/boot-source/shard-*.parquet")
    (repo / "records/boot-retried").mkdir()
    shutil.copyfile(shard, repo / "records/boot-retried/shard-00001.parquet")
    with AnnotationStore(tmp_path / "old-version") as old_store:
        legacy_id = old_store.record_rating(model="m", question="old question", answer="old answer", score=4)
        (repo / "records.jsonl").write_text(json.dumps(old_store.get(legacy_id)) + "\n", encoding="utf-8")

    disk = tmp_path / "next"
    sync, _ = boot(hub, disk, "next")
    assert sync.state.restored == 2
    sync.stop()
    with AnnotationStore(disk) as store:
        assert sorted(r["id"] for r in store.records()) == sorted([record_id, legacy_id])
        exported = export_all(store, formats=("jsonl",), make_zip=False)
    lines = (exported.directory / "records.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2
    # Read as one dataset, de-duplicated by id, the repo holds both; the legacy record now sits in a shard.
    ids = repo_ids(hub, tmp_path)
    assert sorted(set(ids)) == sorted([record_id, legacy_id])
    assert (repo / "records.jsonl").is_file()  # never deleted


def test_campaigns_survive_a_restart_on_an_empty_disk(hub, tmp_path, make_video):
    """Definitions, answers, judgements and skips go up as table shards with the items' videos; a new boot on a
    wiped disk (the manifest's folder gone too) gets them back: the same status, nobody handed an item twice, the
    videos fetched from the Hub, and each table readable with `load_dataset(repo, table)`."""
    from app.access.identity import Identity
    from app.campaigns.manifest import Item, setup_from_fields
    from app.campaigns.store import CampaignStore

    clips = tmp_path / "manifest-folder"
    clips.mkdir()
    videos = [make_video(f"manifest-folder/clip{n}.mp4", duration_s=1.0 + n) for n in range(2)]
    contents = [video.read_bytes() for video in videos]
    shas = [hashlib.sha256(content).hexdigest() for content in contents]
    items = [Item(f"i{n}", str(videos[n % 2]), f"what happens {n}?", None, shas[n % 2], 1.0) for n in range(3)]
    setups = [
        setup_from_fields({"name": name, "model": "slowfast-lite", "compressor": "official", "budget": 100})
        for name in ("x", "y")
    ]
    ann1, ann2 = Identity("account", "ann1", "annotator"), Identity("account", "ann2", "annotator")

    disk_a = tmp_path / "boot-a"
    sync_a, _ = boot(hub, disk_a, "a")
    with CampaignStore(disk_a) as store:
        store.create("cats", items, setups, k=2)
        store.record_answers("cats", [{"item_id": i.id, "setup": s.name, "text": f"{s.name}/{i.id}"}
                                      for i in items for s in setups])  # fmt: skip
        handed = store.next_item("cats", ann1)
        store.judge("cats", handed["item_id"], ann1, choice="a", reason="sharper")
        skipped = store.next_item("cats", ann1)["item_id"]
        store.skip("cats", skipped, ann1)
        before = store.status("cats")
    vote(disk_a, "a chat vote beside the campaign")  # `load_dataset` resolves every config: the default needs files
    assert sync_a.push_now() is not None
    sync_a.stop()
    assert any(path.startswith("campaigns/campaign_judgements/boot-a/") for path in hub.files())
    assert sum(path.startswith("videos/") for path in hub.files()) == 2

    shutil.rmtree(clips)  # the manifest's folder was on the wiped disk too
    disk_b = tmp_path / "boot-b"
    sync_b, _ = boot(hub, disk_b, "b")
    assert sync_b.state.phase == "syncing" and "campaign row" in sync_b.state.message
    with CampaignStore(disk_b) as store:
        assert store.status("cats") == before
        judged = {row["item_id"] for row in store.judgements("cats")}
        seen_by_ann1 = set()
        while (item := store.next_item("cats", ann1)) is not None:
            seen_by_ann1.add(item["item_id"])
            store.judge("cats", item["item_id"], ann1, choice="b")
        assert seen_by_ann1 == {item.id for item in items} - judged - {skipped}
        restored_video = store.items("cats")[0].video
        assert Path(restored_video).read_bytes() == contents[0]
        assert store.next_item("cats", ann2) is not None
    assert sync_b.push_now() is not None
    sync_b.stop()
    assert_append_only(hub)

    copy = tmp_path / "repo-copy-campaigns"
    shutil.copytree(hub.repo_dir(REPO), copy)
    judgements = datasets.load_dataset(str(copy), "campaign_judgements", split="train",
                                       cache_dir=str(tmp_path / "datasets-cache"))  # fmt: skip
    assert sorted(judgements["reason"]) == ["", "sharper"]
