"""One APIRouter per subject; `costline.dashboard.api.app.ROUTERS` lists them."""
