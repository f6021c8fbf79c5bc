"""Verified downloads with pooch and one-time, atomic unzipping.

- ``fetch_verified``: pooch streams to a temporary file in the target folder and moves it into place only
  when its MD5 matches, so an interrupted or corrupted download never sits where a later run looks.
  A cached file whose MD5 no longer matches is downloaded again; a mismatch right after downloading is
  retried once, then reported with the file, the URL and both hashes.
- ``extract``: the wanted members go to a temporary folder renamed into place when complete.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import zipfile
from pathlib import Path

import pooch

from ss4rec.data.errors import DataError

log = logging.getLogger(__name__)
_MD5 = re.compile(r"\b[0-9a-fA-F]{32}\b")


class _HashRecorder:
    """A pooch downloader that remembers the MD5 of what it downloaded (for the mismatch message)."""

    def __init__(self, progressbar: bool):
        self.inner = pooch.HTTPDownloader(progressbar=progressbar, timeout=60)
        self.md5: str | None = None

    def __call__(self, url, output_file, pooch_obj, check_only=False):
        result = self.inner(url, output_file, pooch_obj, check_only=check_only)
        if not check_only:
            self.md5 = pooch.file_hash(str(output_file), alg="md5")
        return result


def fetch_md5(url: str, folder: Path) -> str:
    """The MD5 that the server publishes at ``<url>.md5`` (cached next to the download)."""
    name = url.rsplit("/", 1)[-1] + ".md5"
    try:
        path = pooch.retrieve(url + ".md5", known_hash=None, fname=name, path=folder, progressbar=False)
    except Exception as err:  # requests' errors, OSError
        raise DataError(f"could not fetch the checksum {url}.md5: {err}") from err
    text = Path(path).read_text(errors="replace")
    match = _MD5.search(text)
    if match is None:
        Path(path).unlink(missing_ok=True)
        raise DataError(f"{url}.md5 does not contain an MD5 hash (got {text[:100]!r})")
    return match.group(0).lower()


def fetch_verified(url: str, folder: Path, md5: str, progressbar: bool = True) -> Path:
    """Download ``url`` into ``folder`` (or reuse the cached copy) and return its path; MD5 verified."""
    folder = Path(folder)
    name = url.rsplit("/", 1)[-1]
    target = folder / name
    md5 = md5.lower()
    for attempt in (1, 2):
        recorder = _HashRecorder(progressbar)
        try:
            pooch.retrieve(
                url,
                known_hash=f"md5:{md5}",
                fname=name,
                path=folder,
                downloader=recorder,
                progressbar=progressbar,
            )
            return target
        except ValueError as err:  # pooch's hash mismatch; it has already deleted the download
            if recorder.md5 is None:
                raise DataError(f"{name} from {url}: {err}") from err
            log.warning("%s: MD5 %s, expected %s (attempt %d of 2)", name, recorder.md5, md5, attempt)
        except Exception as err:  # requests' connection and HTTP errors, OSError
            raise DataError(
                f"download of {url} to {target} failed: {err}; nothing was cached, run again to retry"
            ) from err
    raise DataError(
        f"checksum mismatch for {name} downloaded from {url}: expected MD5 {md5}, got {recorder.md5} "
        f"(downloaded twice, deleted both times; if the expected hash is outdated set data.source.md5)"
    )


def extract(archive: Path, members: list[str], dest: Path) -> Path:
    """Extract ``members`` of the zip ``archive`` into ``dest`` once; return ``dest``."""
    dest = Path(dest)
    if dest.is_dir():
        return dest
    tmp = dest.with_name(f"{dest.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with zipfile.ZipFile(archive) as zf:
            names = set(zf.namelist())
            missing = [member for member in members if member not in names]
            if missing:
                raise DataError(f"{archive} lacks {missing}; it has {sorted(names)[:20]}")
            for member in members:
                log.info("extracting %s from %s", member, archive.name)
                zf.extract(member, tmp)
    except zipfile.BadZipFile as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DataError(f"{archive} is not a valid zip file ({err}); delete it to download again") from err
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        os.rename(tmp, dest)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
        if not dest.is_dir():
            raise
    return dest
