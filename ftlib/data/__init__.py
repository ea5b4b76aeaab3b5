"""Training data.

sources      folder layouts: stems, aligned pairs/songs, MUSDB18-HQ, unlabeled music
splits       train/validation splits by song or sub-folder, saved as JSON lists
cache        memory-mapped STFT and waveform caches, built in parallel, self-checking
augment      per-stem augmentations and augmented random crops, per-item seeding
voxaug       VoxAugDataset: on-the-fly instrumental + vocal mixtures (random or cycled vocals, pairs)
validation   fixed validation crops of songs or of held-out stem mixes
pretrain     MaskedPretrainDataset: masked-frame reconstruction on unlabeled music
synth        seeded synthetic songs for tests and the quickstart
"""
