from ngrpo_rl.pipeline.collect import ProblemStream


def test_stream_covers_each_epoch_once_in_a_seeded_order():
    stream = ProblemStream(list(range(10)), seed=3)
    first, second = stream.take(10), stream.take(10)
    assert sorted(first) == sorted(second) == list(range(10))
    assert first != second  # a fresh shuffle each epoch
    assert ProblemStream(list(range(10)), seed=3).take(10) == first


def test_restored_position_continues_the_same_sequence():
    stream = ProblemStream(list(range(7)), seed=0)
    stream.take(9)
    state = stream.get_state()
    expected = stream.take(12)
    restored = ProblemStream(list(range(7)), seed=0)
    restored.set_state(state)
    assert restored.take(12) == expected
