"""Top-k classification accuracy (``localmim.Accuracy``), in percent."""
import torch
from mmengine.evaluator import BaseMetric

from ..registry import METRICS


@METRICS.register_module()
class Accuracy(BaseMetric):
    """Top-k accuracy from samples with ``pred_score`` [classes] and ``gt_label`` [1].

    A sample counts as correct at k if its label is among its k highest scores. Reports
    ``accuracy/top1``, ``accuracy/top5`` ... (percent).
    """
    default_prefix = 'accuracy'

    def __init__(self, topk=(1, 5), collect_device='cpu', prefix=None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.topk = tuple(topk)

    def process(self, data_batch, data_samples):
        for sample in data_samples:
            if 'pred_score' not in sample or 'gt_label' not in sample:
                raise KeyError(f'Accuracy needs pred_score and gt_label in each sample, got {sorted(sample)}')
            self.results.append((torch.as_tensor(sample['pred_score']).cpu().float(),
                                 int(torch.as_tensor(sample['gt_label']).view(-1)[0])))

    def compute_metrics(self, results):
        scores = torch.stack([s for s, _ in results])
        labels = torch.tensor([label for _, label in results])
        if max(self.topk) > scores.shape[1]:
            raise ValueError(f'Accuracy topk={self.topk} exceeds the {scores.shape[1]} classes')
        ranked = scores.topk(max(self.topk), dim=1).indices
        hits = ranked == labels[:, None]
        return {f'top{k}': hits[:, :k].any(1).float().mean().item() * 100 for k in self.topk}
