"""What a file-metadata worker says about a file or tree it cannot see."""
import socket

from flows.file_metadata import not_here, tree_visible


def test_a_file_missing_on_another_machine_says_the_tree_is_not_mounted_there(tmp_path):
    missing = str(tmp_path / "not-mounted" / "a.wav").encode()
    text = not_here(missing, "No such file or directory", flow_host="flow-host")
    assert text == (f"No such file or directory on worker {socket.gethostname()}: the tree is not mounted there "
                    "(the flow listed it on flow-host; mount it at the same path on every worker)")


def test_a_file_gone_from_a_mounted_tree_keeps_the_plain_reason(tmp_path):
    gone = str(tmp_path / "a.wav").encode()  # its folder is there: the file was deleted since the walk
    assert not_here(gone, "No such file or directory", flow_host="flow-host") == "No such file or directory"
    assert not_here(str(tmp_path / "x" / "a.wav").encode(), "No such file or directory",
                    flow_host=socket.gethostname()) == "No such file or directory"  # the flow's own machine


def test_the_worker_check_names_the_tree_and_the_worker(tmp_path):
    assert tree_visible(str(tmp_path)) == ""
    assert tree_visible(str(tmp_path / "nope")) == (f"{tmp_path / 'nope'} does not exist on worker "
                                                    f"{socket.gethostname()}: mount the tree at the same path on every worker")
