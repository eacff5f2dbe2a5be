"""Resources (environments): tools the model may call and a verifier that gives the reward."""
