from processor.core.progress import PartitionProgress, ProgressBook

TP = ("orders", 0)


def test_watermark_waits_for_the_oldest_chunk() -> None:
    progress = PartitionProgress(TP, start=100)
    first = progress.open_chunk(100, 110, 10)
    second = progress.open_chunk(110, 120, 10)
    progress.mark_done(second, 10)  # a later lane finished first
    assert progress.written_until == 100
    progress.mark_done(first, 4)
    assert progress.written_until == 100
    progress.mark_done(first, 6)
    assert progress.written_until == 120
    assert progress.idle


def test_watermark_if_counts_the_batch_being_written() -> None:
    progress = PartitionProgress(TP, start=None)
    chunk = progress.open_chunk(5, 8, 3)
    assert progress.written_until == 5  # unknown start: the first fetched offset
    assert progress.watermark_if({chunk: 2}) == 5
    assert progress.watermark_if({chunk: 3}) == 8
    assert progress.written_until == 5  # a what-if changes nothing


def test_gaps_in_offsets_use_the_record_count() -> None:
    progress = PartitionProgress(TP, start=0)
    chunk = progress.open_chunk(0, 10, 7)  # 3 offsets are transaction markers
    progress.mark_done(chunk, 7)
    assert progress.written_until == 10


def test_book_ignores_completions_for_revoked_partitions() -> None:
    book = ProgressBook()
    progress = book.assign(TP, 0)
    chunk = progress.open_chunk(0, 5, 5)
    book.revoke([TP])
    assert progress.revoked
    book.mark_done({chunk: 5})
    assert progress.written_until == 0
    assert book.watermarks_if({chunk: 5}) == {}


def test_book_watermarks_only_for_touched_partitions() -> None:
    book = ProgressBook()
    a = book.assign(("t", 0), 0).open_chunk(0, 3, 3)
    book.assign(("t", 1), 50).open_chunk(50, 60, 10)
    assert book.watermarks_if({a: 3}) == {("t", 0): 3}
