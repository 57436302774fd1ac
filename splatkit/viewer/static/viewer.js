// splatkit viewer: scene.ply drawn by Spark (three.js), the training cameras as frusta.
//
// Axes: the world is COLMAP's, untouched (the frame of scene.ply). /cameras.json already gives
// each camera's camera-to-world matrix with OpenGL axes (x right, y up, looking down -z), i.e.
// COLMAP's OpenCV camera (x right, y down, z forward) with its y and z axes flipped
// (splatkit/viewer/cameras.py). "Up" for orbiting is the mean image-up of the photos.
import * as THREE from "three";
import { OrbitControls } from "three/addons/controls/OrbitControls.js";
import { SparkRenderer, SplatMesh } from "@sparkjsdev/spark";

const params = new URLSearchParams(location.hash.slice(1));
const showUi = params.get("ui") !== "0";
if (!showUi) document.body.classList.add("noui");

// Read by the tests (and handy in the console).
const state = (window.splatkitViewer = {
  ready: false, error: null, frames: 0, framesSinceReady: 0, camera: -1, numSplats: 0,
});
const statusEl = document.getElementById("status");
const setStatus = (t) => { statusEl.textContent = t; statusEl.style.display = t ? "" : "none"; };
window.addEventListener("error", (e) => { state.error = String(e.message); setStatus(state.error); });

const container = document.getElementById("view");
const renderer = new THREE.WebGLRenderer({ antialias: false });
renderer.setPixelRatio(window.devicePixelRatio || 1);
renderer.setSize(window.innerWidth, window.innerHeight);
renderer.setClearColor(0x000000, 1);
container.appendChild(renderer.domElement);

const scene = new THREE.Scene();
const camera = new THREE.PerspectiveCamera(50, window.innerWidth / window.innerHeight, 0.01, 1000);
scene.add(camera);
// Close to splatkit's own rasterizer: 0.3 px^2 low-pass as gsplat/INRIA (not antialiased),
// depth (not radial) sort, a 3-sigma extent.
const spark = new SparkRenderer({ renderer, preBlurAmount: 0.3, sortRadial: false, maxStdDev: 3.0 });
scene.add(spark);

const controls = new OrbitControls(camera, renderer.domElement);
controls.enableDamping = false;

let data = null; // /cameras.json
let active = null; // camera whose intrinsics the projection uses
const frusta = new THREE.Group();
scene.add(frusta);
const COLORS = { train: 0x33bbee, test: 0xff9933, on: 0xffee33 };

// OpenGL projection reproducing pinhole K (fx, fy, cx, cy in pixels of a W x H image) on a
// vw x vh viewport: the photo is scaled to fit and centred. Same formula as gl_projection() in
// cameras.py: P00 = 2fx/W, P02 = 1 - 2cx/W, P11 = 2fy/H, P12 = 2cy/H - 1.
function projectionFromK(c, vw, vh, near, far) {
  const s = Math.min(vw / c.width, vh / c.height);
  const fx = c.fx * s, fy = c.fy * s;
  const cx = c.cx * s + (vw - c.width * s) / 2, cy = c.cy * s + (vh - c.height * s) / 2;
  return new THREE.Matrix4().set(
    2 * fx / vw, 0, 1 - 2 * cx / vw, 0,
    0, 2 * fy / vh, 2 * cy / vh - 1, 0,
    0, 0, -(far + near) / (far - near), -2 * far * near / (far - near),
    0, 0, -1, 0);
}

function applyProjection() {
  const vw = window.innerWidth, vh = window.innerHeight;
  if (active) {
    camera.projectionMatrix.copy(projectionFromK(active, vw, vh, camera.near, camera.far));
    camera.projectionMatrixInverse.copy(camera.projectionMatrix).invert();
  } else {
    camera.aspect = vw / vh;
    camera.updateProjectionMatrix();
  }
}

window.addEventListener("resize", () => {
  renderer.setSize(window.innerWidth, window.innerHeight);
  applyProjection();
});

const c2wOf = (c) => new THREE.Matrix4().set(...c.c2w_gl); // row-major in the JSON

function buildFrustum(c, depth) {
  // image corners at depth `depth` along the view, OpenCV camera -> OpenGL camera (y, z flipped)
  const pts = [[0, 0], [c.width, 0], [c.width, c.height], [0, c.height]].map(([u, v]) =>
    new THREE.Vector3(((u - c.cx) / c.fx) * depth, -((v - c.cy) / c.fy) * depth, -depth));
  const o = new THREE.Vector3();
  const up = new THREE.Vector3(0, -((0 - c.cy) / c.fy) * depth * 1.25, -depth); // "up" tick
  const seg = [o, pts[0], o, pts[1], o, pts[2], o, pts[3],
    pts[0], pts[1], pts[1], pts[2], pts[2], pts[3], pts[3], pts[0],
    pts[0], up, up, pts[1]];
  const geom = new THREE.BufferGeometry().setFromPoints(seg);
  const mat = new THREE.LineBasicMaterial({ color: c.held_out ? COLORS.test : COLORS.train });
  const lines = new THREE.LineSegments(geom, mat);
  lines.matrixAutoUpdate = false;
  lines.matrix.copy(c2wOf(c));
  return lines;
}

function jumpTo(i) {
  if (!data || !data.cameras.length) return;
  i = ((i % data.cameras.length) + data.cameras.length) % data.cameras.length;
  const c = data.cameras[i];
  const m = c2wOf(c);
  const scale = new THREE.Vector3();
  m.decompose(camera.position, camera.quaternion, scale);
  camera.updateMatrixWorld(true);
  active = c;
  applyProjection();
  // orbit about the point in front of the camera at the distance of the scene's centre
  const fwd = new THREE.Vector3(0, 0, -1).applyQuaternion(camera.quaternion);
  const toTarget = new THREE.Vector3(...data.frame.target).sub(camera.position);
  const dist = Math.max(toTarget.dot(fwd), data.frame.radius * 0.1);
  controls.target.copy(camera.position).addScaledVector(fwd, dist);
  state.camera = i;
  frusta.children.forEach((f, k) => {
    f.material.color.setHex(k === i ? COLORS.on : (data.cameras[k].held_out ? COLORS.test : COLORS.train));
    f.visible = showUi && k !== i;
  });
  document.querySelectorAll("#cams li").forEach((li, k) => li.classList.toggle("on", k === i));
  const li = document.querySelectorAll("#cams li")[i];
  if (li) li.scrollIntoView({ block: "nearest" });
}

function freeView() {
  // start outside the ring of cameras, looking at the scene centre
  const f = data.frame;
  const target = new THREE.Vector3(...f.target);
  camera.up.set(...f.up);
  let from = new THREE.Vector3(...f.up).multiplyScalar(f.radius * 0.6);
  if (data.cameras.length) {
    const c0 = new THREE.Vector3().setFromMatrixPosition(c2wOf(data.cameras[0]));
    from = c0.sub(target).multiplyScalar(1.6).add(from);
  } else {
    from.add(new THREE.Vector3(0, 0, f.radius * 2));
  }
  camera.position.copy(target).add(from);
  controls.target.copy(target);
  controls.update();
}

// a click (not a drag) on a frustum jumps to that camera
const raycaster = new THREE.Raycaster();
let downAt = null;
renderer.domElement.addEventListener("pointerdown", (e) => { downAt = [e.clientX, e.clientY]; });
renderer.domElement.addEventListener("pointerup", (e) => {
  if (!downAt || Math.hypot(e.clientX - downAt[0], e.clientY - downAt[1]) > 4 || !data) return;
  const ndc = new THREE.Vector2((e.clientX / window.innerWidth) * 2 - 1,
    -(e.clientY / window.innerHeight) * 2 + 1);
  raycaster.params.Line.threshold = data.frame.radius * 0.02;
  raycaster.setFromCamera(ndc, camera);
  const hit = raycaster.intersectObjects(frusta.children.filter((f) => f.visible), false)[0];
  if (hit) jumpTo(frusta.children.indexOf(hit.object));
});
window.addEventListener("hashchange", () => {
  const h = new URLSearchParams(location.hash.slice(1));
  if (h.has("cam")) jumpTo(Number(h.get("cam")));
});
window.addEventListener("keydown", (e) => {
  if (e.key === "]") jumpTo(state.camera + 1);
  if (e.key === "[") jumpTo(state.camera - 1);
});

async function main() {
  data = await (await fetch("cameras.json")).json();
  const f = data.frame;
  camera.near = f.radius * 0.005;
  camera.far = f.radius * 200;
  camera.up.set(...f.up);
  const depth = f.radius * 0.07;
  const list = document.getElementById("cams");
  data.cameras.forEach((c, i) => {
    const fr = buildFrustum(c, depth);
    fr.visible = showUi;
    frusta.add(fr);
    const li = document.createElement("li");
    li.textContent = c.name;
    if (c.held_out) li.classList.add("test");
    li.addEventListener("click", () => jumpTo(i));
    list.appendChild(li);
  });
  const nTest = data.cameras.filter((c) => c.held_out).length;

  const start = params.has("cam") ? Number(params.get("cam")) : -1;
  if (start >= 0) jumpTo(start); else { freeView(); applyProjection(); }

  renderer.setAnimationLoop(() => {
    renderer.render(scene, camera);
    state.frames += 1;
    if (state.ready) state.framesSinceReady += 1;
  });

  const mesh = new SplatMesh({ url: "scene.ply" });
  scene.add(mesh);
  await mesh.initialized;
  state.numSplats = mesh.packedSplats ? mesh.packedSplats.numSplats : 0;
  document.getElementById("info").textContent =
    `${state.numSplats.toLocaleString()} splats, ${data.cameras.length} cameras ` +
    `(${nTest} held out, orange)`;
  setStatus("");
  state.ready = true;
}

main().catch((e) => {
  state.error = String(e && e.stack ? e.stack : e);
  setStatus("Could not load the scene: " + e);
  console.error(e);
});
