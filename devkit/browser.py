"""ComfyUI's real frontend in headless Chromium: load the bundled workflows as a user would, screenshot them.

The page is the one the host serves (ComfyUI's frontend package); each UI-format workflow is fetched
from the Templates route (/api/workflow_templates/<pack>/<name>.json) and loaded with the frontend's
own `app.loadGraphData`. Chromium and chromedriver come from Debian (`apt-get install chromium
chromium-driver`; scripts/setup.sh does it when it runs as root); nothing is downloaded at run time.

    python -m devkit.generate      # writes docs/screenshots/<workflow>.png (and the other generated files)
"""
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

from . import paths

SCREENSHOTS_DIR = paths.REPO_ROOT / "docs" / "screenshots"
WINDOW = (1920, 1200)
# First-run settings a user dismisses once: the Templates dialog and the minimap. Level of detail off: a tall graph
# fitted to the window is drawn below the frontend's font-size threshold, which would blank every node's text.
SETTINGS = {"Comfy.TutorialCompleted": True, "Comfy.Minimap.Visible": False, "LiteGraph.Canvas.MinFontSizeForLOD": 0}
LOAD_SCRIPT = """
const [url, done] = [arguments[0], arguments[arguments.length - 1]];
(async () => {
  const response = await fetch(url);
  if (!response.ok) return done({status: response.status});
  await window.app.loadGraphData(await response.json());
  await new Promise(resolve => setTimeout(resolve, 500));
  const canvas = window.app.canvas, nodes = window.app.graph._nodes;
  const left = 70, top = 100;   // the sidebar, the tab bar and the Run toolbar
  const x0 = Math.min(...nodes.map(n => n.pos[0])), y0 = Math.min(...nodes.map(n => n.pos[1] - 30));
  const x1 = Math.max(...nodes.map(n => n.pos[0] + n.size[0])), y1 = Math.max(...nodes.map(n => n.pos[1] + n.size[1]));
  const width = canvas.canvas.clientWidth - left, height = canvas.canvas.clientHeight - top;
  const scale = Math.min(width / (x1 - x0 + 60), height / (y1 - y0 + 60), 1.2);
  canvas.ds.scale = scale;
  canvas.ds.offset = [left / scale + width / scale / 2 - (x0 + x1) / 2, top / scale + height / scale / 2 - (y0 + y1) / 2];
  canvas.setDirty(true, true);
  await new Promise(resolve => setTimeout(resolve, 500));
  done({
    status: response.status,
    nodes: nodes.map(n => n.type),
    unregistered: nodes.filter(n => !(n.type in LiteGraph.registered_node_types)).map(n => n.type),
    with_errors: nodes.filter(n => n.has_errors).map(n => n.type),
    dialogs: [...document.querySelectorAll('.p-dialog')].map(d => d.innerText.slice(0, 300)),
    boxes: Object.fromEntries(nodes.map(n => [n.id, [n.pos[0], n.pos[1] - LiteGraph.NODE_TITLE_HEIGHT,
                                                    n.size[0], n.size[1] + LiteGraph.NODE_TITLE_HEIGHT]])),
  });
})().catch(error => done({error: String(error)}));
"""
PROMPT_SCRIPT = """
const done = arguments[arguments.length - 1];
window.app.graphToPrompt().then(p => done({prompt: p.output}), error => done({error: String(error)}));
"""


DROP_SCRIPT = """
const [url, done] = [arguments[0], arguments[arguments.length - 1]];
(async () => {
  const response = await fetch(url);
  if (!response.ok) return done({status: response.status});
  window.app.graph.clear();
  const file = new File([await response.blob()], url.split('/').pop(), {type: 'image/png'});
  await window.app.handleFile(file);
  await new Promise(resolve => setTimeout(resolve, 500));
  done({status: response.status, nodes: window.app.graph._nodes.map(n => n.type),
        dialogs: [...document.querySelectorAll('.p-dialog')].map(d => d.innerText.slice(0, 300))});
})().catch(error => done({error: String(error)}));
"""


class BrowserMissing(RuntimeError):
    pass


def chromium_paths() -> tuple[str, str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not (browser and driver):
        raise BrowserMissing("Chromium and chromedriver are not installed: run `apt-get install chromium "
                             "chromium-driver` (scripts/setup.sh does it when run as root).")
    return browser, driver


@contextmanager
def frontend(server, timeout: float = 120):
    """A headless Chromium showing the host's ComfyUI page, once the frontend has registered the nodes."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    browser, driver_path = chromium_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 f"--window-size={WINDOW[0]},{WINDOW[1]}"):
        options.add_argument(flag)
    server.post_json("/api/settings", SETTINGS)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        driver.set_script_timeout(timeout)
        driver.get(server.url + "/")
        driver.execute_script("localStorage.setItem('vueNodesBannerDismissed', 'true')")
        driver.refresh()
        deadline = time.monotonic() + timeout
        while not driver.execute_script("return !!(window.app && window.app.graph && window.LiteGraph && "
                                        "Object.keys(LiteGraph.registered_node_types).length > 50)"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"ComfyUI's frontend did not start within {timeout} s at {server.url}")
            time.sleep(0.5)
        yield driver
    finally:
        driver.quit()


def load_workflow(driver, name: str) -> dict:
    """Load workflows/<name>.json through the Templates route; what the frontend then shows."""
    url = f"/api/workflow_templates/{paths.PACK_FOLDER_NAME}/{name}.json"
    return driver.execute_async_script(LOAD_SCRIPT, url)


def prompt_of_shown_graph(driver) -> dict:
    """The API prompt the frontend makes of the graph it shows, as the Run button queues it."""
    made = driver.execute_async_script(PROMPT_SCRIPT)
    if "error" in made:
        raise RuntimeError(f"the frontend could not make a prompt of the graph: {made['error']}")
    return made["prompt"]


def drop_workflow_png(driver, name: str) -> dict:
    """Hand workflows/png/<name>.png to the frontend's file handler, as dropping it on the canvas does."""
    return driver.execute_async_script(DROP_SCRIPT, f"/api/workflow_templates/{paths.PACK_FOLDER_NAME}/png/{name}.png")


def registered_stylesmith_nodes(driver) -> list[str]:
    return driver.execute_script("return Object.keys(LiteGraph.registered_node_types)"
                                 ".filter(type => type.startsWith('StyleSmith'))")


def generate(server, folder: Path = SCREENSHOTS_DIR) -> list[Path]:
    """A screenshot of every bundled workflow as the frontend shows it."""
    from .workflows import ui_workflows
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    with frontend(server) as driver:
        for name in sorted(ui_workflows()):
            shown = load_workflow(driver, name)
            if shown.get("error") or shown.get("dialogs") or shown.get("unregistered"):
                raise RuntimeError(f"{name}: the frontend reports {shown}")
            driver.save_screenshot(str(folder / f"{name}.png"))
            written.append(folder / f"{name}.png")
    return written
