"""Separation (inference): mask models applied to whole songs in streamed chunks with real context,
batches of files and playlists, ensembles and test-time augmentation.

stream      files decoded and written block by block; STFT and inverse STFT in blocks
separator   Separator and predict_mask: chunks, batches, ensembles, TTA, post-processing
batch       command-line inputs (files, folders, playlists) into jobs; what ``ftlib separate`` runs
"""
from ftlib.separation.batch import BatchResult, collect_jobs, read_playlist, separate_all
from ftlib.separation.separator import (STEM_NAMES, Separator, check_model, load_model, predict_mask,
                                       separate_with_mask, stem_paths)

__all__ = ["STEM_NAMES", "BatchResult", "Separator", "check_model", "collect_jobs", "load_model", "predict_mask",
           "read_playlist", "separate_all", "separate_with_mask", "stem_paths"]
