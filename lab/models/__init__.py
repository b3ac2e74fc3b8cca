"""Models: the zoo, artifacts and their meta.json (ModelMeta), building, user models, static analysis, the digits set, accuracy, output agreement, the host reference and int8 quantisation."""
