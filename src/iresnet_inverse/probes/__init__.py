"""What a trained network learned: directional derivatives, Jacobian saliency, clustering, edges."""
