"""``localmim.ImageNet``: an image-folder classification dataset (ImageNet layout).

Layout: ``data_root/split/<class>/<image>``; classes are the sorted sub-folder names and the label
is the class's position in that order. Alternatively an ``ann_file`` with one ``relative/path label``
line per image (paths relative to ``data_root/split``), as in the usual ``meta/train.txt``.
Files are listed when the dataset is fully initialised (``lazy_init=True`` postpones it).
"""
import os
import os.path as osp

from mmengine.dataset import BaseDataset

from localmim.registry import DATASETS

from .samplers import SeededItems

__all__ = ['IMAGE_EXTENSIONS', 'ImageNet']

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.ppm', '.pgm', '.tif', '.tiff', '.webp')


def _sorted_entries(folder):
    with os.scandir(folder) as entries:
        return sorted(entries, key=lambda e: e.name)


@DATASETS.register_module()
class ImageNet(SeededItems, BaseDataset):
    """Image-folder dataset giving ``dict(img_path=str, gt_label=int)`` per image before the pipeline.

    Args:
        data_root: dataset root.
        split: sub-folder of ``data_root`` holding the images (e.g. ``'train'``, ``'val'``).
        ann_file: optional ``relative/path label`` list, relative to ``data_root`` unless absolute.
        classes: optional class names (otherwise the sorted sub-folders when listing folders).
        extensions: accepted image suffixes (case-insensitive) when listing folders.
        pipeline, test_mode, lazy_init, max_refetch: as in mmengine's ``BaseDataset``. In training
            mode a pipeline returning None (e.g. ``LoadImage(on_error='skip')`` on a corrupt file)
            makes the dataset return another, random sample.
    """

    def __init__(self, data_root, split='train', ann_file=None, classes=None, extensions=IMAGE_EXTENSIONS,
                 pipeline=(), test_mode=False, lazy_init=False, max_refetch=1000):
        self.split = split
        self.extensions = tuple(e.lower() for e in extensions)
        metainfo = dict(classes=tuple(classes)) if classes is not None else None
        super().__init__(ann_file=ann_file or '', data_root=data_root, data_prefix=dict(img_path=split),
                         metainfo=metainfo, pipeline=list(pipeline), test_mode=test_mode,
                         lazy_init=lazy_init, max_refetch=max_refetch)

    @property
    def num_skipped(self):
        """Images skipped so far by the pipeline's loaders in this process (``LoadImage(on_error='skip')``)."""
        return sum(getattr(t, 'num_skipped', 0) for t in self.pipeline.transforms)

    @property
    def image_folder(self):
        return self.data_prefix['img_path']

    def load_data_list(self):
        if not osp.isdir(self.image_folder):
            raise FileNotFoundError(f'ImageNet image folder not found: {self.image_folder} '
                                    f'(expected data_root/split/<class>/<image>, data_root={self.data_root!r})')
        if self.ann_file:
            return self._load_annotation_list()
        return self._list_class_folders()

    def _list_class_folders(self):
        class_dirs = [e for e in _sorted_entries(self.image_folder) if e.is_dir()]
        if not class_dirs:
            raise FileNotFoundError(f'ImageNet image folder {self.image_folder} has no class sub-folders')
        names = [e.name for e in class_dirs]
        given = self._metainfo.get('classes')
        if given is not None and tuple(given) != tuple(names):
            raise ValueError(f'classes given ({len(given)}) differ from the sub-folders of '
                             f'{self.image_folder} ({len(names)})')
        self._metainfo['classes'] = tuple(names)
        data_list = []
        for label, class_dir in enumerate(class_dirs):
            for entry in _sorted_entries(class_dir.path):
                if entry.is_file() and entry.name.lower().endswith(self.extensions):
                    data_list.append(dict(img_path=entry.path, gt_label=label))
        if not data_list:
            raise FileNotFoundError(f'no images with suffixes {self.extensions} under {self.image_folder}')
        return data_list

    def _load_annotation_list(self):
        if not osp.isfile(self.ann_file):
            raise FileNotFoundError(f'ImageNet annotation file not found: {self.ann_file}')
        num_classes = len(self._metainfo['classes']) if 'classes' in self._metainfo else None
        data_list = []
        with open(self.ann_file) as f:
            for line_no, line in enumerate(f, 1):
                if not line.strip():
                    continue
                parts = line.rsplit(maxsplit=1)
                if len(parts) != 2 or not parts[1].lstrip('-').isdigit():
                    raise ValueError(f'{self.ann_file}:{line_no}: expected "relative/path label", '
                                     f'got {line.rstrip()!r}')
                label = int(parts[1])
                if label < 0 or (num_classes is not None and label >= num_classes):
                    raise ValueError(f'{self.ann_file}:{line_no}: label {label} out of range '
                                     f'[0, {num_classes if num_classes is not None else "inf"})')
                data_list.append(dict(img_path=osp.join(self.image_folder, parts[0].strip()), gt_label=label))
        return data_list
