"""Write-ups generated from a finished ``dvc repro`` run (``lusaug report``)."""
