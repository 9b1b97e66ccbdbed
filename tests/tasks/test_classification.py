import torch

from zoo.tasks.classification import classification_metrics


def test_metrics_stay_separate_after_a_perfect_first_batch():
    metrics = classification_metrics(10, "test/")
    labels = torch.arange(10).repeat(4)
    perfect = torch.nn.functional.one_hot(labels, 10).float() * 5
    metrics.update(perfect, labels)  # top-1 and top-5 statistics are identical after this batch
    wrong = perfect.roll(1, dims=1)  # every prediction off by one class, second-best logit the true class
    wrong[torch.arange(40), labels] = 1.0
    metrics.update(wrong, labels)
    values = metrics.compute()
    assert values["test/acc"] == 0.5 and values["test/acc_top5"] == 1.0
    assert abs(values["test/f1_macro"].item() - 0.5) < 0.01  # grouped with top-5, it used to read 1.0
