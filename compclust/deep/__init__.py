"""Deep clustering from compclust's pieces: an autoencoder pretrained as one compiled program, its
embedding clustered by any compclust algorithm (optionally after UMAP, as N2D), fine-tuned by DEC /
IDEC or trained jointly with a SOM (DESOM), and a run picked among restarts without labels.

This package imports flax (and umap-learn when a UMAP method runs); ``import compclust`` does not."""
from . import losses
from .autoencoder import (DEC_HIDDEN, Autoencoder, MLPDecoder, MLPEncoder, PretrainConfig, Pretrained,
                          dec_autoencoder, embed, pretrain, random_shifts)
from .dec import DECConfig, DECResult, finetune, soft_assignments
from .desom import DESOMConfig, DESOMResult, decode_prototypes, train as train_desom
from .pipeline import (METHODS, SELECTIONS, DeepClustering, DeepConfig, Selected, agreement_scores, cluster_space,
                       run, run_restarts, select, silhouette, umap_map)

__all__ = ["losses", "DEC_HIDDEN", "Autoencoder", "MLPEncoder", "MLPDecoder", "PretrainConfig", "Pretrained",
           "dec_autoencoder", "embed", "pretrain", "random_shifts", "DECConfig", "DECResult", "finetune",
           "soft_assignments", "DESOMConfig", "DESOMResult", "decode_prototypes", "train_desom", "METHODS",
           "SELECTIONS", "DeepClustering", "DeepConfig", "Selected", "agreement_scores", "cluster_space", "run",
           "run_restarts", "select", "silhouette", "umap_map"]
